// Package strictjson decodes request bodies strictly and in one pass: one
// JSON value, names matched exactly (case-sensitive), no name twice in an
// object, no member the Go type does not have, valid UTF-8, right types,
// nothing after the value. A body that would mean one thing here and
// another to a proxy or a log reader (a repeated or case-folded name) is
// refused rather than guessed at.
//
// It is github.com/go-json-experiment/json (encoding/json/v2) with its
// strict defaults and unknown members rejected: the REST API and the AWS
// protocol share it, each wording the Error in its own terms.
package strictjson

import (
	"bytes"
	"errors"
	"reflect"
	"strings"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Kind says what is wrong with a body.
type Kind int

// Kinds of Error.
const (
	Malformed Kind = iota // not JSON
	Trailing              // more than one value
	NotObject             // the top-level value is not what the operation takes
	Duplicate             // a name given twice in one object
	Unknown               // a name the request type does not have (names are case-sensitive)
	WrongType             // a value of the wrong JSON type (or a binary field that is not base64)
)

// Error is a refused body. Its fields say nothing of the body's values,
// only its names, so it can be shown to the client.
type Error struct {
	Kind Kind
	// Field is the member's path, dotted (items.0.key_id), clipped; empty
	// for the top level.
	Field string
	// Type is the JSON type the field takes (WrongType): string, number,
	// boolean, object or array.
	Type string
}

func (e *Error) Error() string {
	switch e.Kind {
	case Trailing:
		return "request body must hold exactly one JSON object"
	case NotObject:
		return "request body must be a JSON object"
	case Duplicate:
		return "field \"" + e.Field + "\" is given more than once"
	case Unknown:
		return "unknown field \"" + e.Field + "\" (field names are case-sensitive)"
	case WrongType:
		return "field " + e.Field + " must be of type " + e.Type
	}
	return "malformed JSON"
}

var opts = json.RejectUnknownMembers(true)

// Unmarshal decodes body into v (a pointer). An empty or all-blank body is
// an empty object. Every failure is an *Error.
func Unmarshal(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	err := json.Unmarshal(body, v, opts)
	if err == nil {
		return nil
	}
	return classify(body, err)
}

func classify(body []byte, err error) error {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	switch {
	case errors.As(err, &syn):
		if errors.Is(err, jsontext.ErrDuplicateName) {
			return &Error{Kind: Duplicate, Field: path(syn.JSONPointer)}
		}
		// A complete first value followed by more is a second value.
		if _, rerr := jsontext.NewDecoder(bytes.NewReader(body)).ReadValue(); rerr == nil {
			return &Error{Kind: Trailing}
		}
		return &Error{Kind: Malformed}
	case errors.As(err, &sem):
		if errors.Is(err, json.ErrUnknownName) {
			return &Error{Kind: Unknown, Field: path(sem.JSONPointer)}
		}
		if sem.JSONPointer == "" {
			return &Error{Kind: NotObject}
		}
		return &Error{Kind: WrongType, Field: path(sem.JSONPointer), Type: jsonType(sem.GoType)}
	}
	return &Error{Kind: Malformed}
}

// maxField bounds a name echoed back to the client.
const maxField = 100

// path is a JSON pointer as a dotted path.
func path(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
		if b.Len() > maxField {
			return b.String()[:maxField] + "..."
		}
	}
	return b.String()
}

var unmarshalerV1 = reflect.TypeFor[interface{ UnmarshalJSON([]byte) error }]()

// jsonType is the JSON type a Go type takes.
func jsonType(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerV1) {
		return "value this field takes"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string (base64)"
		}
		return "array"
	case reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return t.Kind().String()
}
