package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"reflect"
	"strings"

	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
)

// bind decodes the request body into v strictly: one JSON object, no unknown
// fields, no trailing data, right types. An empty body is an empty object.
// Every failure is a ValidationException naming what is wrong.
func bind(c echo.Context, v any) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		// Echo's body limit refuses a declared length up front; a chunked
		// body is cut off while it is read, here.
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) || errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return service.Validationf("the request body did not arrive within the read timeout")
		}
		return service.Validationf("cannot read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return service.Validationf("request body must hold exactly one JSON object")
	}
	// encoding/json matches names case-insensitively and lets the last of
	// two equal names win: a body that means one thing here and another to
	// a proxy or a log reader is refused instead.
	return checkNames(json.NewDecoder(bytes.NewReader(body)), reflect.TypeOf(v))
}

// checkNames walks the JSON value that dec holds beside the Go type t it
// was decoded into: no object may repeat a name, and an object decoded
// into a struct may use only its fields' exact JSON names. t nil (or a
// type that decodes itself) checks repetitions only.
func checkNames(dec *json.Decoder, t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil
	}
	tok, err := dec.Token()
	if err != nil {
		return service.Validationf("malformed JSON")
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return service.Validationf("malformed JSON")
			}
			name, _ := tok.(string)
			if seen[name] {
				return service.Validationf("field %q is given more than once", name)
			}
			seen[name] = true
			var elem reflect.Type
			switch {
			case fields != nil:
				ft, ok := fields[name]
				if !ok {
					return service.Validationf("unknown field %q (field names are case-sensitive)", name)
				}
				elem = ft
			case t != nil && t.Kind() == reflect.Map:
				elem = t.Elem()
			}
			if err := checkNames(dec, elem); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := checkNames(dec, elem); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
	}
	if err != nil {
		return service.Validationf("malformed JSON")
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// jsonFields maps the JSON names of a struct's fields to their types, as
// encoding/json names them (tag name, else the Go name; embedded structs
// without a tag contribute their own fields).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				maps.Copy(out, jsonFields(ft))
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// jsonError turns a decoding error into a client-safe ValidationException.
func jsonError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return service.Validationf("malformed JSON")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return service.Validationf("request body must be a JSON object")
		}
		return service.Validationf("field %s must be of type %s", typ.Field, jsonType(typ.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return service.Validationf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return service.Validationf("malformed JSON")
}

func jsonType(kind string) string {
	switch kind {
	case "map", "struct":
		return "object"
	case "slice":
		return "array"
	case "int", "int64", "int32", "uint", "uint32", "uint64", "float64":
		return "number"
	}
	return kind
}

// decodeBase64 reads a required base64 field strictly (padding required).
func decodeBase64(field string, s *string) ([]byte, error) {
	if s == nil {
		return nil, service.Validationf("field %s is required", field)
	}
	out, err := base64.StdEncoding.Strict().DecodeString(*s)
	if err != nil {
		return nil, service.Validationf("field %s is not valid base64", field)
	}
	return out, nil
}

// requireField reports a missing required field.
func requireField(name string, present bool) error {
	if !present {
		return service.Validationf("field %s is required", name)
	}
	return nil
}
