package store

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A new SQLite database, with its -wal and -shm files, is readable by its
// owner only, whatever the umask: it holds the token hashes and the audit
// trail. A file that exists already keeps the mode its operator gave it.
func TestSQLiteFileIsOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022) // the usual default, which would leave 0644
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "kms.db")
	db, err := Open(t.Context(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The -wal and -shm files exist once a connection has written.
	if _, err := db.w.ExecContext(t.Context(), `CREATE TABLE perm_probe (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kms.db", "kms.db-wal", "kms.db-shm"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if mode := st.Mode().Perm(); mode&0o077 != 0 {
			t.Errorf("%s: mode %04o, want 0600", name, mode)
		}
	}

	kept := filepath.Join(dir, "kept.db")
	if err := os.WriteFile(kept, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(t.Context(), "sqlite:"+kept)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if st, err := os.Stat(kept); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("an existing file's mode changed: %v %v", st.Mode(), err)
	}
}
