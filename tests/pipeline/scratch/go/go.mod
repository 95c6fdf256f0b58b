// The pipeline test's scratch module (no dependencies), standing in for clients/go/go.mod.
module example.com/pcieemu-scratch

go 1.19
