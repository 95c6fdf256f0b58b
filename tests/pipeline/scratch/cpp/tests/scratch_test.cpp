// Scratch C++ suite of the pipeline test: healthy unless SCRATCH_MODE=crash, when the test binary
// segfaults after another test has passed, leaving a child process behind as a crashed test
// binary leaves its server.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <string>

TEST(Scratch, Passes) { EXPECT_EQ(2, 1 + 1); }

TEST(Scratch, SegfaultsWhenAsked) {
  const char* mode = std::getenv("SCRATCH_MODE");
  if (mode != nullptr && std::string(mode) == "crash") {
    // Like the real tests' server: a child sharing stdout that nobody stops once the binary dies.
    if (::fork() == 0) {
      ::execlp("sleep", "sleep", "300", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    volatile int* nowhere = nullptr;
    *nowhere = 1;
  }
}
