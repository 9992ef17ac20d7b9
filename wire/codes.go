package wire

// Error codes of the API (docs/API.md, "Errors"): the "code" of an error
// body. ConflictException and KeyUnavailableException are safe to retry;
// LimitExceededException is a quota.
const (
	CodeValidation        = "ValidationException"
	CodeInvalidCiphertext = "InvalidCiphertextException"
	CodeIncorrectKey      = "IncorrectKeyException"
	CodeUnauthenticated   = "UnauthenticatedException"
	CodeAccessDenied      = "AccessDeniedException"
	CodeNotFound          = "NotFoundException"
	CodeAlreadyExists     = "AlreadyExistsException"
	CodeDisabled          = "DisabledException"
	CodeInvalidState      = "KMSInvalidStateException"
	CodeConflict          = "ConflictException"
	CodeLimitExceeded     = "LimitExceededException"
	CodeUnavailable       = "KeyUnavailableException"
	CodeUnsupportedMedia  = "UnsupportedMediaTypeException"
	CodeInternal          = "KMSInternalException"
)
