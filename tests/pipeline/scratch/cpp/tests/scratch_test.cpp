// Scratch C++ suite of the pipeline test: healthy unless SCRATCH_MODE=crash, when the test binary
// segfaults after another test has passed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

TEST(Scratch, Passes) { EXPECT_EQ(2, 1 + 1); }

TEST(Scratch, SegfaultsWhenAsked) {
  const char* mode = std::getenv("SCRATCH_MODE");
  if (mode != nullptr && std::string(mode) == "crash") {
    volatile int* nowhere = nullptr;
    *nowhere = 1;
  }
}
