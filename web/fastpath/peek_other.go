//go:build !unix

package fastpath

// Without MSG_PEEK an idle connection keeps its buffer while it waits.
const canPeek = false

func peekWouldBlock(uintptr, []byte) bool { return false }
