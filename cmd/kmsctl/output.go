package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// output prints results as JSON (the API's own objects) or as tables.
type output struct{ json bool }

func newOutput(format string) (output, error) {
	switch format {
	case "table":
		return output{}, nil
	case "json":
		return output{json: true}, nil
	}
	return output{}, fmt.Errorf("--output %q: want table or json", format)
}

// one prints a single object: JSON, or one "field  value" line per field.
func (o output) one(w io.Writer, v any) error {
	if o.json {
		return writeJSON(w, v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rv := reflect.Indirect(reflect.ValueOf(v))
	for i := 0; i < rv.NumField(); i++ {
		name := field(rv.Type().Field(i))
		if name == "" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\n", name, fieldCell(name, rv.Field(i)))
	}
	return tw.Flush()
}

// many prints a list: JSON (under key), or a table with the given columns
// (JSON field names).
func (o output) many(w io.Writer, key string, items any, cols ...string) error {
	if o.json {
		return writeJSON(w, map[string]any{key: items})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	rv := reflect.ValueOf(items)
	for i := 0; i < rv.Len(); i++ {
		row := reflect.Indirect(rv.Index(i))
		cells := make([]string, len(cols))
		for j, c := range cols {
			for k := 0; k < row.NumField(); k++ {
				if field(row.Type().Field(k)) == c {
					cells[j] = fieldCell(c, row.Field(k))
				}
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// field is a struct field's JSON name.
func field(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// fieldCell formats the value of a named field: intervals, which the API
// gives in seconds, in days when they are whole days (as they were given).
func fieldCell(name string, v reflect.Value) string {
	if strings.HasSuffix(name, "_interval") && v.Kind() == reflect.String {
		return inDays(v.String())
	}
	return cell(v)
}

// inDays turns "7776000s" into "90d"; anything else stays as it is.
func inDays(s string) string {
	n, err := strconv.ParseInt(strings.TrimSuffix(s, "s"), 10, 64)
	if err != nil || !strings.HasSuffix(s, "s") || n <= 0 || n%86400 != 0 {
		return cell(reflect.ValueOf(s))
	}
	return strconv.FormatInt(n/86400, 10) + "d"
}

// cell formats one value for a table.
func cell(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "-"
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case []string:
		if len(x) == 0 {
			return "-"
		}
		return strings.Join(x, ",")
	case map[string]string:
		if len(x) == 0 {
			return "-"
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + x[k]
		}
		return strings.Join(parts, ",")
	case string:
		if x == "" {
			return "-"
		}
		return x
	}
	if v.Kind() == reflect.Slice || v.Kind() == reflect.Struct {
		b, _ := json.Marshal(v.Interface())
		return string(b)
	}
	return fmt.Sprint(v.Interface())
}
