package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The README's quick start is this program, byte for byte, so that it
// always compiles.
func TestReadmeQuickStartIsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	prog, err := os.ReadFile("main.go")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(readme), "## Quick start")
	require.True(t, ok, "README has no quick start")
	_, block, ok := strings.Cut(after, "```go\n")
	require.True(t, ok, "the quick start has no Go block")
	block, _, ok = strings.Cut(block, "```\n")
	require.True(t, ok)
	require.Equal(t, string(prog), block, "README's quick start differs from examples/quickstart/main.go: copy it over")
}
