package hsm

import (
	"fmt"
	"path/filepath"
	"strings"
)

// ProfileNames are the names SelectProfile takes (KMS_HSM_PROFILE).
var ProfileNames = []string{"auto", "softhsm", "nss", "generic"}

// SelectProfile returns the profile called name; "auto" picks it from the
// module's file name (SoftHSM's for *softhsm*, NSS softoken's for
// *softokn*, else the standards-following DefaultProfile). It is the one
// place that maps names to profiles, for kmsd and for the tests.
func SelectProfile(name, module string) (Profile, error) {
	switch name {
	case "softhsm":
		return SoftHSMProfile, nil
	case "nss":
		return NSSProfile, nil
	case "generic":
		return DefaultProfile, nil
	case "auto", "":
		base := strings.ToLower(filepath.Base(module))
		switch {
		case strings.Contains(base, "softhsm"):
			return SoftHSMProfile, nil
		case strings.Contains(base, "softokn"):
			return NSSProfile, nil
		}
		return DefaultProfile, nil
	}
	return Profile{}, fmt.Errorf("hsm: profile %q is not one of %s", name, strings.Join(ProfileNames, ", "))
}
