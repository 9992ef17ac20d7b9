package policy

// Verdict is the outcome of a state check. The service maps each refusal to
// its domain error (Disabled -> DisabledException, InvalidState ->
// KMSInvalidStateException, Unknown -> NotFound or InvalidCiphertext).
type Verdict int

// Verdicts.
const (
	Allow        Verdict = iota
	Disabled             // the key or version is disabled
	InvalidState         // not allowed in this state (pending deletion, import, deleted, ...)
	Unknown              // the object is not usable at all (being created, pending)
)

// Op is an operation on a key, as far as its state matters.
type Op int

// Operations whose permission depends on the key's state.
const (
	OpEncrypt Op = iota // encrypt, generate data key, re-encrypt destination
	OpDecrypt           // decrypt, re-encrypt source
	OpEnable
	OpDisable
	OpScheduleDeletion
	OpCancelDeletion
	OpRotate
	OpUpdate      // description, tags, rotation policy
	OpAliasTarget // create or update an alias to point at the key
	OpImport      // import key material (EXTERNAL keys)
	OpDeleteMaterial
)

// Key states and origins as the service spells them; policy takes plain
// strings so that it depends on nothing.
const (
	StateEnabled         = "Enabled"
	StateDisabled        = "Disabled"
	StatePendingDeletion = "PendingDeletion"
	StatePendingImport   = "PendingImport"
	StateDeleted         = "Deleted"
	StateCreating        = "Creating"
	OriginExternal       = "EXTERNAL"
)

// KeyOperation decides whether op is allowed on a key in state with origin.
func KeyOperation(state, origin string, op Op) Verdict {
	switch state {
	case StateCreating:
		return Unknown
	case StateDeleted:
		return InvalidState
	}
	switch op {
	case OpEncrypt, OpDecrypt:
		switch state {
		case StateEnabled:
			return Allow
		case StateDisabled:
			return Disabled
		}
		return InvalidState
	case OpEnable, OpDisable:
		if state == StateEnabled || state == StateDisabled {
			return Allow
		}
		return InvalidState
	case OpScheduleDeletion:
		if state == StatePendingDeletion {
			return InvalidState
		}
		return Allow
	case OpCancelDeletion:
		if state == StatePendingDeletion {
			return Allow
		}
		return InvalidState
	case OpRotate:
		if origin == OriginExternal {
			return InvalidState
		}
		switch state {
		case StateEnabled:
			return Allow
		case StateDisabled:
			return Disabled
		}
		return InvalidState
	case OpUpdate, OpAliasTarget:
		return Allow
	case OpImport:
		// Material goes into a key that has none: to replace it, delete
		// it first (and only the same material is accepted again).
		if origin != OriginExternal || state != StatePendingImport {
			return InvalidState
		}
		return Allow
	case OpDeleteMaterial:
		if origin != OriginExternal || state == StatePendingDeletion || state == StatePendingImport {
			return InvalidState
		}
		return Allow
	}
	return InvalidState
}

// Version states as the service spells them.
const (
	VersionPending            = "Pending"
	VersionPrimary            = "Primary"
	VersionDecryptOnly        = "DecryptOnly"
	VersionDisabled           = "Disabled"
	VersionPendingDestruction = "PendingDestruction"
	VersionDestroyed          = "Destroyed"
)

// VersionDecrypt decides whether a version may decrypt. This is the one
// place that says which version states can open a blob (Vault keeps the same
// check in one function, DecryptWithFactory).
func VersionDecrypt(state string) Verdict {
	switch state {
	case VersionPrimary, VersionDecryptOnly:
		return Allow
	case VersionDisabled:
		return Disabled
	case VersionPendingDestruction, VersionDestroyed:
		return InvalidState
	}
	return Unknown
}

// ManagedKeyAllows says whether op is allowed on a key the service manages
// (the default key of an alias/managed/ name): it may be used and it
// rotates on its own schedule, but nobody disables, deletes, re-aliases,
// re-configures or imports into it.
func ManagedKeyAllows(op Op) bool {
	switch op {
	case OpEncrypt, OpDecrypt, OpRotate:
		return true
	}
	return false
}
