package auditexport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The state file holds the seq of the last record exported, in decimal.
// It is saved after the sink is synced (a file: fsync), about once a
// second, so that it never runs ahead of what the sink holds: after a
// crash, a restart exports again at most the last second's records (a
// SIEM tells them by their seq), never skips one.

// loadState reads the state file; found is false when there is none (or
// no path).
func loadState(path string) (seq int64, found bool, err error) {
	if path == "" {
		return 0, false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("audit-sink-state: %v", errors.Unwrap(err))
	}
	seq, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || seq < 0 {
		return 0, false, fmt.Errorf("audit-sink-state: %s does not hold a record number; remove it to start the export after the chain's head", path)
	}
	return seq, true, nil
}

// syncer is a sink that can flush what it wrote (the file sink).
type syncer interface{ Sync() error }

// saveState syncs the sink, then replaces the state file with seq.
func (e *Exporter) saveState(seq int64) error {
	if e.cfg.StateFile == "" {
		return nil
	}
	if s, ok := e.cfg.Sink.(syncer); ok {
		if err := s.Sync(); err != nil {
			return err
		}
	}
	return writeState(e.cfg.StateFile, seq)
}

// writeState writes seq to a temporary file and renames it over path.
func writeState(path string, seq int64) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	if _, err := tmp.WriteString(strconv.FormatInt(seq, 10) + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// CheckState says whether the state file can be kept: its directory must
// take new files (checked at start, so that kmsd stops with a clear error
// instead of warning later).
func CheckState(path string) error {
	if path == "" {
		return nil
	}
	if _, _, err := loadState(path); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("audit-sink-state: cannot write next to %s: %v", path, errors.Unwrap(err))
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}
