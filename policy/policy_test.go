package policy

import (
	"testing"
	"time"
)

func TestKeyOperation(t *testing.T) {
	states := []string{StateEnabled, StateDisabled, StatePendingDeletion, StatePendingImport, StateDeleted, StateCreating}
	// want[op][state] for HSM-origin keys; A=Allow D=Disabled I=InvalidState U=Unknown.
	want := map[Op]string{
		OpEncrypt:          "ADIIIU",
		OpDecrypt:          "ADIIIU",
		OpEnable:           "AAIIIU",
		OpDisable:          "AAIIIU",
		OpScheduleDeletion: "AAIAIU",
		OpCancelDeletion:   "IIAIIU",
		OpRotate:           "ADIIIU",
		OpUpdate:           "AAAAIU",
		OpAliasTarget:      "AAAAIU",
		OpImport:           "IIIIIU",
		OpDeleteMaterial:   "IIIIIU",
	}
	letter := map[Verdict]byte{Allow: 'A', Disabled: 'D', InvalidState: 'I', Unknown: 'U'}
	for op, row := range want {
		for i, st := range states {
			if got := letter[KeyOperation(st, "HSM", op)]; got != row[i] {
				t.Errorf("op %d in %s: got %c, want %c", op, st, got, row[i])
			}
		}
	}
	// EXTERNAL keys: never rotate; import and material deletion depend on state.
	ext := map[Op]string{
		OpRotate:         "IIIIIU",
		OpImport:         "IIIAIU",
		OpDeleteMaterial: "AAIIIU",
		OpEncrypt:        "ADIIIU",
	}
	for op, row := range ext {
		for i, st := range states {
			if got := letter[KeyOperation(st, OriginExternal, op)]; got != row[i] {
				t.Errorf("EXTERNAL op %d in %s: got %c, want %c", op, st, got, row[i])
			}
		}
	}
}

func TestVersionDecrypt(t *testing.T) {
	for state, want := range map[string]Verdict{
		VersionPrimary: Allow, VersionDecryptOnly: Allow, VersionDisabled: Disabled,
		VersionPendingDestruction: InvalidState, VersionDestroyed: InvalidState,
		VersionPending: Unknown, "": Unknown,
	} {
		if got := VersionDecrypt(state); got != want {
			t.Errorf("%q: got %d, want %d", state, got, want)
		}
	}
}

func TestRotationStatus(t *testing.T) {
	cases := []struct {
		on            bool
		state, origin string
		want          string
	}{
		{true, StateEnabled, "HSM", RotationStatusEnabled},
		{true, StateDisabled, "HSM", RotationStatusSuspended},
		{true, StatePendingDeletion, "HSM", RotationStatusSuspended},
		{false, StateEnabled, "HSM", RotationStatusDisabled},
		{true, StateEnabled, OriginExternal, RotationStatusDisabled},
	}
	for _, c := range cases {
		if got := RotationStatus(c.on, c.state, c.origin); got != c.want {
			t.Errorf("%+v: got %s", c, got)
		}
	}
}

func TestNextRotation(t *testing.T) {
	day := 24 * time.Hour
	last := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := NextRotation(last, 90*day); !got.Equal(last.Add(90 * day)) {
		t.Fatalf("next = %v", got)
	}
	now := last.Add(400 * day)
	// Overdue after a pause: restart from now, no burst.
	if got := ResumedNextRotation(last, now, 90*day); !got.Equal(now.Add(90 * day)) {
		t.Fatalf("resumed overdue = %v", got)
	}
	// Not overdue: keep the schedule.
	if got := ResumedNextRotation(last, last.Add(10*day), 90*day); !got.Equal(last.Add(90 * day)) {
		t.Fatalf("resumed on time = %v", got)
	}
}
