// Package policy holds the service's pure decisions: which operation a key
// allows in which state, which version states may decrypt, and the rotation
// schedule. It does no I/O and knows nothing of HTTP, SQL or the token, so
// every rule is tested exhaustively with tables.
package policy
