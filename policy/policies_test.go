package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testCAPEM returns a freshly made self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// problemLines returns the lines of a validation error, failing unless it
// is a *ValidationError wrapping ErrInvalidPolicy.
func problemLines(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("err = %v, want a *ValidationError wrapping ErrInvalidPolicy", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(ve.Problems) {
		t.Fatalf("%d lines for %d problems", len(lines), len(ve.Problems))
	}
	return lines
}

func checkLines(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	got := problemLines(t, err)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestPromotionPolicyValidate(t *testing.T) {
	good := PromotionPolicy{
		Enabled: true, SourceRepository: "dev/app", TargetRepository: "qa/app",
		Rules: []Rule{R("tag", "semver", ">=1.0.0")}, TagTemplate: "%n-%Y%m%d",
	}
	tests := []struct {
		name   string
		mutate func(*PromotionPolicy)
		want   []string
	}{
		{"good", func(*PromotionPolicy) {}, nil},
		{"no rules, no template", func(p *PromotionPolicy) { p.Rules, p.TagTemplate = nil, "" }, nil},
		{"named", func(p *PromotionPolicy) { p.ID, p.Name = "7f3a", "dev-to-qa" }, nil},
		{"everything wrong", func(p *PromotionPolicy) {
			p.ID = "a b"
			p.Name = "-x"
			p.SourceRepository = ""
			p.TargetRepository = "QA/App"
			p.Rules = []Rule{R("tag", "matches", "("), R("tag", "sw", "1"), R("vulnerability_high", "lt", "x")}
			p.TagTemplate = "%n-%q"
		}, []string{
			`id: "a b" has character ' '; use letters, digits, ., _ and -, starting with a letter or digit`,
			`name: "-x" has character '-'; use letters, digits, ., _ and -, starting with a letter or digit`,
			`rules[0] (tag matches): invalid regexp "(": missing closing )`,
			`rules[2] (vulnerability_high lt): value "x" is not a whole number >= 0`,
			`tagTemplate: invalid tag template "%n-%q": unknown code %q at position 4`,
			`sourceRepository: required`,
			`targetRepository: "QA/App" is not a repository name: /-separated parts of lowercase letters and digits, joined by ., _, __ or -`,
		}},
		{"same repository", func(p *PromotionPolicy) { p.TargetRepository = "dev/app" }, []string{
			`targetRepository: "dev/app" is the source repository; a promotion goes to another repository`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			tc.mutate(&p)
			checkLines(t, p.Validate(), tc.want)
		})
	}
	var re *RuleError
	p := good
	p.Rules = []Rule{R("colour", "eq", "x")}
	if err := p.Validate(); !errors.As(err, &re) || re.Index != 0 || !errors.Is(err, ErrInvalidRule) {
		t.Errorf("rule problems must stay *RuleError: %v", err)
	}
}

func TestCheckRepository(t *testing.T) {
	for _, s := range []string{"a", "dev/app", "library/alpine", "a.b_c__d---e/f0", "x/y/z/w", strings.Repeat("a", 255)} {
		if err := checkRepository(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", "/a", "a/", "a//b", "A", "a_", "_a", "a..b", "a___b", "a.-b", "a b", "a:b", "é", strings.Repeat("a", 256)} {
		if err := checkRepository(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestMirroringPolicyValidate(t *testing.T) {
	ca := testCAPEM(t)
	good := PushMirroringPolicy{
		Enabled: true, LocalRepository: "qa/app",
		Remote: Remote{RemoteHost: "https://eu.example.org", RemoteRepository: "prod/app", Username: "mirror", Password: "s3cret"},
	}
	tests := []struct {
		name   string
		mutate func(*Remote)
		want   []string
	}{
		{"good", func(*Remote) {}, nil},
		{"anonymous", func(r *Remote) { r.Username, r.Password = "", "" }, nil},
		{"port and slash", func(r *Remote) { r.RemoteHost = "https://eu.example.org:5443/" }, nil},
		{"plain http", func(r *Remote) { r.RemoteHost = "http://127.0.0.1:5000" }, nil},
		{"IPv6", func(r *Remote) { r.RemoteHost = "https://[::1]:5000" }, nil},
		{"CA", func(r *Remote) { r.RemoteCA = ca }, nil},
		{"two CAs", func(r *Remote) { r.RemoteCA = ca + "\n" + ca }, nil},
		{"password file", func(r *Remote) { r.Password, r.PasswordFile = "", "/run/secrets/eu" }, nil},
		{"skip TLS verification", func(r *Remote) { r.SkipTLSVerification = true }, nil},
		{"no host", func(r *Remote) { r.RemoteHost = "" }, []string{"remoteHost: required"}},
		{"no scheme", func(r *Remote) { r.RemoteHost = "eu.example.org" }, []string{
			`remoteHost: "eu.example.org" has no scheme; write https://eu.example.org`}},
		{"ftp", func(r *Remote) { r.RemoteHost = "ftp://eu.example.org" }, []string{
			`remoteHost: "ftp://eu.example.org": scheme "ftp" is not http or https`}},
		{"user info, never echoed", func(r *Remote) { r.RemoteHost = "https://bob:hunter2@eu.example.org" }, []string{
			`remoteHost: "https://bob:xxxxx@eu.example.org": user name and password go in username and password, not in the URL`}},
		{"path", func(r *Remote) { r.RemoteHost = "https://eu.example.org/v2/prod" }, []string{
			`remoteHost: "https://eu.example.org/v2/prod" must not have a path; the repository goes in remoteRepository`}},
		{"query", func(r *Remote) { r.RemoteHost = "https://eu.example.org/?a=b" }, []string{
			`remoteHost: "https://eu.example.org/?a=b" must not have a query or fragment`}},
		{"fragment", func(r *Remote) { r.RemoteHost = "https://eu.example.org#x" }, []string{
			`remoteHost: "https://eu.example.org#x" must not have a query or fragment`}},
		{"bad port", func(r *Remote) { r.RemoteHost = "https://eu.example.org:99999" }, []string{
			`remoteHost: "https://eu.example.org:99999": port "99999" is not 1-65535`}},
		{"empty port", func(r *Remote) { r.RemoteHost = "https://eu.example.org:" }, []string{
			`remoteHost: "https://eu.example.org:": port "" is not 1-65535`}},
		{"no hostname", func(r *Remote) { r.RemoteHost = "https://:443" }, []string{`remoteHost: "https://:443" has no host`}},
		{"unparsable, never echoed", func(r *Remote) { r.RemoteHost = "https://bob:p%zz@eu" }, []string{`remoteHost: not a valid URL`}},
		{"bad remote repository", func(r *Remote) { r.RemoteRepository = "Prod" }, []string{
			`remoteRepository: "Prod" is not a repository name: /-separated parts of lowercase letters and digits, joined by ., _, __ or -`}},
		{"username with colon", func(r *Remote) { r.Username = "a:b" }, []string{`username: must not contain ':'`}},
		{"username without password", func(r *Remote) { r.Password = "" }, []string{
			`password: required when username is set (or use passwordFile)`}},
		{"password without username", func(r *Remote) { r.Username = "" }, []string{`username: required when a password is set`}},
		{"password and file", func(r *Remote) { r.PasswordFile = "/run/secrets/eu" }, []string{
			`passwordFile: set together with password; use one of them`}},
		{"relative password file", func(r *Remote) { r.Password, r.PasswordFile = "", "secrets/eu" }, []string{
			`passwordFile: "secrets/eu" is not an absolute path`}},
		{"CA not PEM", func(r *Remote) { r.RemoteCA = "hello" }, []string{`remoteCA: no PEM certificate found`}},
		{"private key pasted, never echoed", func(r *Remote) {
			r.RemoteCA = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-key-bytes")}))
		}, []string{`remoteCA: PEM block 1 is a PRIVATE KEY, not a CERTIFICATE`}},
		{"CA garbage", func(r *Remote) {
			r.RemoteCA = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))
		}, []string{`remoteCA: certificate 1 does not parse: x509: malformed certificate`}},
		{"CA trailing text", func(r *Remote) { r.RemoteCA = ca + "trailing" }, []string{`remoteCA: text after certificate 1 is not PEM`}},
		{"CA and skip", func(r *Remote) { r.RemoteCA, r.SkipTLSVerification = ca, true }, []string{
			`skipTLSVerification: set together with remoteCA; use one of them`}},
		{"TLS options on http", func(r *Remote) {
			r.RemoteHost, r.RemoteCA, r.SkipTLSVerification = "http://eu.example.org", ca, true
		}, []string{
			`skipTLSVerification: set together with remoteCA; use one of them`,
			`remoteCA: has no effect on an http:// remoteHost`,
			`skipTLSVerification: has no effect on an http:// remoteHost`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			push := good
			tc.mutate(&push.Remote)
			checkLines(t, push.Validate(), tc.want)
			poll := PollMirroringPolicy{Enabled: true, LocalRepository: "mirror/alpine", Remote: push.Remote}
			checkLines(t, poll.Validate(), tc.want)
			if err := push.Validate(); err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
	push := good
	push.LocalRepository, push.TagTemplate, push.Rules = "", "%", []Rule{R("tag", "eq")}
	checkLines(t, push.Validate(), []string{
		`rules[0] (tag eq): operator eq takes exactly one value, got 0`,
		`tagTemplate: invalid tag template "%": lone % at position 1; write %% for a literal %`,
		`localRepository: required`,
	})
}

func TestPollInterval(t *testing.T) {
	base := PollMirroringPolicy{LocalRepository: "mirror/alpine", Remote: Remote{RemoteHost: "https://registry-1.docker.io", RemoteRepository: "library/alpine"}}
	tests := []struct {
		interval time.Duration
		want     []string
		eff      time.Duration
	}{
		{0, nil, 30 * time.Minute},
		{time.Minute, nil, time.Minute},
		{6 * time.Hour, nil, 6 * time.Hour},
		{30 * time.Second, []string{"interval: 30s is below the minimum of 1m"}, 30 * time.Second},
		{-time.Minute, []string{"interval: -1m is negative"}, -time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.interval.String(), func(t *testing.T) {
			p := base
			p.Interval = Duration(tc.interval)
			checkLines(t, p.Validate(), tc.want)
			if got := p.PollInterval(); got != tc.eff {
				t.Errorf("PollInterval = %s, want %s", got, tc.eff)
			}
		})
	}
}

// TestPolicyJSON checks the DTR key names, and that the password is read
// but never written.
func TestPolicyJSON(t *testing.T) {
	in := `{"enabled":true,"localRepository":"mirror/alpine","remoteHost":"https://registry-1.docker.io",
		"remoteRepository":"library/alpine","username":"bot","password":"hunter2","remoteCA":"",
		"skipTLSVerification":false,"rules":[{"field":"tag","operator":"sw","values":["3."]}],
		"tagTemplate":"%n","interval":"1h30m","mirrorDeletes":true}`
	var p PollMirroringPolicy
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	if p.Password != "hunter2" || p.Username != "bot" || p.RemoteRepository != "library/alpine" || !p.MirrorDeletes ||
		time.Duration(p.Interval) != 90*time.Minute || len(p.Rules) != 1 || p.TagTemplate != "%n" {
		t.Fatalf("decoded %+v", p.Remote)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") || strings.Contains(string(out), `"password"`) {
		t.Errorf("password written out: %s", out)
	}
	var keys map[string]any
	if err := json.Unmarshal(out, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"enabled", "localRepository", "remoteHost", "remoteRepository", "username",
		"skipTLSVerification", "rules", "tagTemplate", "interval", "mirrorDeletes"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("key %s missing from %s", k, out)
		}
	}
	if keys["interval"] != "1h30m" {
		t.Errorf("interval = %v", keys["interval"])
	}
	if p.Password != "hunter2" {
		t.Error("MarshalJSON cleared the caller's password")
	}
	for _, s := range []string{p.String(), fmt.Sprintf("%v", p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("formatting leaks the password: %s", s)
		}
	}

	push := PushMirroringPolicy{ID: "p1", LocalRepository: "qa/app", Remote: Remote{RemoteHost: "https://eu", RemoteRepository: "prod/app", Username: "u", Password: "hunter2"}}
	out, err = json.Marshal(push)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("push policy writes its password: %s", out)
	}
	for _, s := range []string{fmt.Sprintf("%v", push), fmt.Sprintf("%#v", push), fmt.Sprint(&push)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("formatting leaks the password: %s", s)
		}
	}
	for _, m := range []interface{ MarshalYAML() (any, error) }{push, p} {
		v, err := m.MarshalYAML()
		if err != nil {
			t.Fatal(err)
		}
		rv := reflect.ValueOf(v)
		if rv.FieldByName("Password").String() != "" || rv.FieldByName("Username").String() == "" {
			t.Errorf("MarshalYAML gives %T with password %q", v, rv.FieldByName("Password"))
		}
	}
	if got := push.String(); got != `push mirroring "p1": qa/app -> https://eu prod/app` {
		t.Errorf("String = %q", got)
	}

	var promo PromotionPolicy
	if err := json.Unmarshal([]byte(`{"enabled":true,"sourceRepository":"dev/app","targetRepository":"qa/app","rules":[],"tagTemplate":"%n-%Y%m%d"}`), &promo); err != nil {
		t.Fatal(err)
	}
	if promo.TargetRepository != "qa/app" || promo.TagTemplate != "%n-%Y%m%d" || promo.Validate() != nil {
		t.Errorf("promotion decoded as %+v", promo)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"30m", 30 * time.Minute, "30m"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"2d", 48 * time.Hour, "48h"},
		{"1w", 168 * time.Hour, "168h"},
		{"1d12h", 36 * time.Hour, "36h"},
		{"1.5h", 90 * time.Minute, "1h30m"},
		{"90s", 90 * time.Second, "1m30s"},
		{"250ms", 250 * time.Millisecond, "250ms"},
		{"0", 0, "0s"},
		{"-30d", -720 * time.Hour, "-720h"},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if s := Duration(got).String(); s != tc.out {
			t.Errorf("Duration(%v).String() = %q, want %q", got, s, tc.out)
		}
	}
	for _, in := range []string{"", "-", "30", "m", "1x", "1.2.3h", "h1", "1h-2m", "99999999999999h"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
	var d Duration
	for in, want := range map[string]time.Duration{`"45m"`: 45 * time.Minute, `120`: 2 * time.Minute, `0.5`: 500 * time.Millisecond} {
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("json %s = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{`true`, `"soon"`, `1e300`} {
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("json %s accepted", in)
		}
	}
}

func TestRemoteFormatting(t *testing.T) {
	r := Remote{RemoteHost: "https://eu", RemoteRepository: "prod/app", Username: "u", Password: "hunter2"}
	for _, s := range []string{fmt.Sprintf("%v", r), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("formatting leaks the password: %s", s)
		}
	}
	if got := r.String(); got != "https://eu prod/app as u" {
		t.Errorf("String = %q", got)
	}
}
