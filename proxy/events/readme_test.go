package events

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// readmeExample is how the README shows a type's payload: the sample with
// a fixed id and creation time.
func readmeExample(t *testing.T, typ Type) string {
	t.Helper()
	ev, err := Sample(typ, "dtr.example.org")
	if err != nil {
		t.Fatal(err)
	}
	ev.ID = "01a2336796400000-5f1d9a4b11e2"
	ev.CreatedAt = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	if err := json.Indent(&buf, mustJSON(t, ev), "", "  "); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestREADMEExamples: the README's "Webhooks" section shows every type's
// payload exactly as the code makes it (run with -update-readme to print
// them).
func TestREADMEExamples(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, typ := range Types {
		ex := readmeExample(t, typ)
		if os.Getenv("PRINT_README_EXAMPLES") != "" {
			t.Logf("#### `%s`\n```json\n%s\n```\n", typ, ex)
			continue
		}
		if !strings.Contains(readme, ex) {
			t.Errorf("the README has no example of %s as the code makes it:\n%s", typ, ex)
		}
	}
}
