package store

import (
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// updateOf finds the column lists of "UPDATE OF <columns> ON <table>" in
// trigger definitions.
var updateOf = regexp.MustCompile(`(?s)UPDATE OF\s+([a-z_,\s]+?)\s+ON\s+([a-z_]+)`)

// TestChangeTriggersCoverEveryColumn: the key cache keeps a view until the
// change log names its key, and the log is written by triggers that fire
// on the columns they list. A column added to keys or key_versions and
// left out of those lists would change without the log saying so: a view
// kept stale with no bound but MaxKeyViewAge. So every column of the two
// tables, on each dialect, must be in a trigger's list, but the worker's
// lease columns (which no request sees).
func TestChangeTriggersCoverEveryColumn(t *testing.T) {
	notLogged := []string{"lease_owner", "lease_until"}
	eachStore(t, func(t *testing.T, s *DB) {
		dir := path.Join("migrations", string(s.dialect))
		entries, err := fs.ReadDir(migrationFS, dir)
		noErr(t, err)
		logged := map[string][]string{}
		for _, e := range entries {
			b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
			noErr(t, err)
			for _, m := range updateOf.FindAllStringSubmatch(string(b), -1) {
				for _, c := range strings.Split(m[1], ",") {
					logged[m[2]] = append(logged[m[2]], strings.TrimSpace(c))
				}
			}
		}
		query := `SELECT name FROM pragma_table_info(?) ORDER BY cid`
		if s.dialect == dialectPostgres {
			query = `SELECT column_name FROM information_schema.columns
				WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`
		}
		for _, table := range []string{"keys", "key_versions"} {
			var cols []string
			noErr(t, s.w.SelectContext(t.Context(), &cols, s.w.Rebind(query), table))
			if len(cols) == 0 || len(logged[table]) == 0 {
				t.Fatalf("%s: columns %v, trigger columns %v: the test reads nothing", table, cols, logged[table])
			}
			for _, c := range cols {
				if !slices.Contains(logged[table], c) && !slices.Contains(notLogged, c) {
					t.Errorf("%s.%s is in no change-log trigger's UPDATE OF list (migrations/%s): a change to it would not reach other replicas' caches", table, c, s.dialect)
				}
			}
		}
	})
}
