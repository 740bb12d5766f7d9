package main

import "regexp"

// knownDifference is an intended difference between upstream's build of a
// program and ours on one capture: an upstream fault this module fixes, with
// the reason MIGRATION.md gives. Every differing line must match one of its
// patterns, so a new difference on the same capture still fails.
type knownDifference struct {
	program, run, capture string
	reason                string
	lines                 []*regexp.Regexp
}

func (k knownDifference) matches(diff []string) bool {
	for _, l := range diff {
		ok := false
		for _, re := range k.lines {
			if re.MatchString(l) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func lookupKnown(program, run, capture string) (knownDifference, bool) {
	for _, k := range knownDifferences() {
		if k.program == program && k.run == run && k.capture == capture {
			return k, true
		}
	}
	return knownDifference{}, false
}

// knownDifferences lists the intended differences.
func knownDifferences() []knownDifference {
	return nil
}
