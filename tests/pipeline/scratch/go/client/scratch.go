// Package client is the pipeline test's scratch Go package.
package client
