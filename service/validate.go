package service

import (
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// AliasPrefix starts every alias name.
const AliasPrefix = "alias/"

// managedAliasPrefix is reserved for keys the service manages itself.
const managedAliasPrefix = AliasPrefix + "managed/"

var aliasNameRE = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)

// Limits on client-supplied values.
const (
	maxDescriptionLen  = 8192
	maxTags            = 50
	maxTagKeyLen       = 128
	maxTagValueLen     = 256
	maxContextPairs    = 64
	maxContextBytes    = 8192
	MaxPlaintextLen    = 4096
	maxDataKeyBytes    = 1024
	maxRandomBytes     = 1024
	defaultPageLimit   = 100
	maxPageLimit       = 1000
	maxCiphertextBytes = 6144
)

// validateAliasName checks an alias/NAME.
func validateAliasName(name string) error {
	if !aliasNameRE.MatchString(name) {
		return Validationf("alias name %q must be alias/ followed by 1 to 250 letters, digits, '/', '_' or '-'", name)
	}
	if strings.HasPrefix(name, AliasPrefix+"aws/") {
		return Validationf("alias name %q uses a reserved prefix", name)
	}
	return nil
}

// parseKeyID canonicalises a key id; a malformed one is a ValidationException.
func parseKeyID(ref string) (uuid.UUID, error) {
	id, err := uuid.Parse(ref)
	if err != nil || len(ref) != 36 {
		return uuid.UUID{}, Validationf("key id %q is neither a key id (UUID) nor alias/NAME", truncate(ref, 80))
	}
	return id, nil
}

func validateDescription(d string) error {
	if len(d) > maxDescriptionLen || !utf8.ValidString(d) {
		return Validationf("description must be valid UTF-8 of at most %d bytes", maxDescriptionLen)
	}
	return nil
}

func validateTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return Validationf("at most %d tags", maxTags)
	}
	for k, v := range tags {
		if k == "" || len(k) > maxTagKeyLen || !utf8.ValidString(k) {
			return Validationf("tag key %q must be 1 to %d bytes of UTF-8", truncate(k, 80), maxTagKeyLen)
		}
		if len(v) > maxTagValueLen || !utf8.ValidString(v) {
			return Validationf("tag %q: value must be at most %d bytes of UTF-8", truncate(k, 80), maxTagValueLen)
		}
	}
	return nil
}

func validateContext(c map[string]string) error {
	if len(c) > maxContextPairs {
		return Validationf("encryption_context has more than %d pairs", maxContextPairs)
	}
	size := 0
	for k, v := range c {
		if k == "" {
			return Validationf("encryption_context keys must not be empty")
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return Validationf("encryption_context must be valid UTF-8")
		}
		size += len(k) + len(v)
	}
	if size > maxContextBytes {
		return Validationf("encryption_context is larger than %d bytes", maxContextBytes)
	}
	return nil
}

// pageLimit applies the default and bounds of a list's limit.
func pageLimit(limit int) (int, error) {
	if limit == 0 {
		return defaultPageLimit, nil
	}
	if limit < 1 || limit > maxPageLimit {
		return 0, Validationf("limit must be between 1 and %d", maxPageLimit)
	}
	return limit, nil
}

// A next_token is the opaque (base64url) form of the cursor of the last item.
func encodePageToken(cursor string) string {
	if cursor == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(cursor))
}

func decodePageToken(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) == 0 || len(b) > 300 {
		return "", Validationf("next_token is not a token this service issued")
	}
	return string(b), nil
}

func decodeVersionToken(token string) (int, error) {
	s, err := decodePageToken(token)
	if err != nil || s == "" {
		return 0, err
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > MaxVersion {
		return 0, Validationf("next_token is not a token this service issued")
	}
	return v, nil
}

// truncate shortens client input echoed in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func itoa(n int) string { return strconv.Itoa(n) }

// paged runs one page of a keyset-paginated list: it checks limit and
// next_token, fetches limit+1 rows after the token's cursor and, when there
// are more, keeps limit of them and returns the token of the last one.
// Store errors come back as they are (the caller maps them).
func paged[T any](limit int, nextToken string, fetch func(p Page) ([]T, error), cursor func(*T) string) ([]T, string, error) {
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	after, err := decodePageToken(nextToken)
	if err != nil {
		return nil, "", err
	}
	rows, err := fetch(Page{After: after, Limit: limit + 1})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = encodePageToken(cursor(&rows[limit-1]))
	}
	return rows, next, nil
}
