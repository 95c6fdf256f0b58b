// Package pcieemu is the pipeline test's scratch Go package.
package pcieemu
