package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/progress"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/policies"
	"golang.org/x/term"
)

// policyUsage is the help of `dtrcache policy`.
const policyUsage = `Usage: dtrcache policy <command> [flags]

Talks to a running origin's API (/api/v0) as an administrator or a
repository admin, to see and run promotion and mirroring policies.

Commands:
  list              every policy you may see, one line each
  plan [POLICY]     which tags each policy (or POLICY, an id or name) would
                    copy where now, without copying anything
  run POLICY        run a policy now over every tag of its repository (a
                    poll mirror: one poll); --wait follows its jobs
  jobs              recent jobs (--state, --policy, --limit)

Flags of every command:
  --origin URL      the origin (env DTRCACHE_ORIGIN)
  --user NAME       your account (env DTRCACHE_USER)
  --password-file F a file holding your password (or env DTRCACHE_PASSWORD)
  --ca FILE         a CA to trust for the origin's certificate

Policies themselves are created through the API or the origin's policy
file (policies.file); see the README's "Policies" section.
`

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, policyUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("policy "+sub, "policy "+sub+" [flags]", stderr)
	originURL := fs.String("origin", envOr("DTRCACHE_ORIGIN", ""), "the origin's URL (env DTRCACHE_ORIGIN)")
	user := fs.String("user", envOr("DTRCACHE_USER", ""), "your account (env DTRCACHE_USER)")
	passFile := fs.String("password-file", "", "a file holding your password (or env DTRCACHE_PASSWORD)")
	ca := fs.String("ca", "", "a CA file to trust for the origin")
	wait := fs.Bool("wait", false, "run: wait for the jobs to finish, showing progress")
	stateF := fs.String("state", "", "jobs: only these states (comma-separated)")
	policyF := fs.String("policy", "", "jobs: only this policy's jobs (id)")
	limit := fs.Int("limit", 20, "jobs: at most this many")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *originURL == "" {
		fmt.Fprintln(stderr, "dtrcache policy: --origin (or DTRCACHE_ORIGIN) is required")
		return 2
	}
	pass := os.Getenv("DTRCACHE_PASSWORD")
	if *passFile != "" {
		b, err := os.ReadFile(*passFile)
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache policy: --password-file: %v\n", err)
			return 2
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	var cas []string
	if *ca != "" {
		cas = []string{*ca}
	}
	tc, err := tlsConfig(cas)
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache policy: --ca: %v\n", err)
		return 2
	}
	c := &apiClient{base: strings.TrimRight(*originURL, "/"), user: *user, pass: pass,
		hc: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}}
	var runErr error
	switch sub {
	case "list":
		runErr = policyList(ctx, c, stdout)
	case "plan":
		if fs.NArg() > 1 {
			fmt.Fprintln(stderr, "dtrcache policy plan: at most one POLICY")
			return 2
		}
		runErr = policyPlan(ctx, c, fs.Arg(0), stdout)
	case "run":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "dtrcache policy run: name one POLICY (an id or name)")
			return 2
		}
		runErr = policyRun(ctx, c, fs.Arg(0), *wait, stdout, stderr)
	case "jobs":
		runErr = policyJobs(ctx, c, *stateF, *policyF, *limit, stdout)
	default:
		fmt.Fprintf(stderr, "dtrcache policy: unknown command %q\n\n%s", sub, policyUsage)
		return 2
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "dtrcache policy %s: %v\n", sub, runErr)
		return 1
	}
	return 0
}

// apiClient calls the origin's API.
type apiClient struct {
	base, user, pass string
	hc               *http.Client
}

// call sends a request and decodes a JSON answer into out; a registry
// error body becomes the error's text.
func (c *apiClient) call(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Errors []struct{ Code, Message string } `json:"errors"`
		}
		if json.Unmarshal(data, &e) == nil && len(e.Errors) > 0 {
			return fmt.Errorf("%s: %s %s", resp.Status, e.Errors[0].Code, e.Errors[0].Message)
		}
		return fmt.Errorf("%s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

type policyLine struct {
	ID, Name, Kind, Source string
	Enabled                bool
	SourceRepository       string `json:"sourceRepository"`
	TargetRepository       string `json:"targetRepository"`
	LocalRepository        string `json:"localRepository"`
	RemoteHost             string `json:"remoteHost"`
	RemoteRepository       string `json:"remoteRepository"`
	TagTemplate            string `json:"tagTemplate"`
	Interval               string `json:"interval"`
	AuthorID               string `json:"authorID"`
	Rules                  []struct {
		Field, Operator string
		Values          []string
	}
}

func (p policyLine) route() string {
	switch policies.Kind(p.Kind) {
	case policies.Promotion:
		return p.SourceRepository + " → " + p.TargetRepository
	case policies.PushMirroring:
		return p.LocalRepository + " → " + p.RemoteHost + "/" + p.RemoteRepository
	case policies.PollMirroring:
		return p.RemoteHost + "/" + p.RemoteRepository + " → " + p.LocalRepository
	}
	return ""
}

func policyList(ctx context.Context, c *apiClient, out io.Writer) error {
	var ps []policyLine
	if err := c.call(ctx, http.MethodGet, "/api/v0/policies", nil, &ps); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tKIND\tENABLED\tFROM → TO\tRULES\tTEMPLATE\tSOURCE")
	for _, p := range ps {
		var rules []string
		for _, r := range p.Rules {
			rules = append(rules, r.Field+" "+r.Operator+" "+strings.Join(r.Values, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", p.ID, p.Name, strings.TrimSuffix(p.Kind, "Policies"), p.Enabled, p.route(),
			strings.Join(rules, "; "), p.TagTemplate, p.Source)
	}
	return tw.Flush()
}

func policyPlan(ctx context.Context, c *apiClient, which string, out io.Writer) error {
	path := "/api/v0/policies/plan"
	if which != "" {
		path += "?policy=" + url.QueryEscape(which)
	}
	var plans []policies.Plan
	if err := c.call(ctx, http.MethodGet, path, nil, &plans); err != nil {
		return err
	}
	for _, p := range plans {
		name := p.PolicyID
		if p.Name != "" {
			name = p.Name + " (" + p.PolicyID + ")"
		}
		state := ""
		if !p.Enabled {
			state = " — disabled, would not run"
		}
		fmt.Fprintf(out, "%s policy %s%s\n", strings.TrimSuffix(string(p.Kind), "Policies"), name, state)
		if p.Error != "" {
			fmt.Fprintf(out, "  error: %s\n", p.Error)
			continue
		}
		if len(p.Items) == 0 {
			fmt.Fprintln(out, "  no tag meets its tag and repository rules")
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, it := range p.Items {
			switch it.Action {
			case "copy":
				fmt.Fprintf(tw, "  copy\t%s\t→ %s\t%s\n", it.Source, it.Target, it.Digest)
			case "up-to-date":
				fmt.Fprintf(tw, "  up to date\t%s\t= %s\t%s\n", it.Source, it.Target, it.Digest)
			default:
				fmt.Fprintf(tw, "  %s\t%s\t%s\t\n", it.Action, it.Source, it.Reason)
			}
		}
		tw.Flush()
		if p.Truncated {
			fmt.Fprintf(out, "  (only the first %d tags were looked at)\n", policies.MaxPlanTags)
		}
	}
	return nil
}

func policyRun(ctx context.Context, c *apiClient, which string, wait bool, stdout, stderr io.Writer) error {
	var ps []policyLine
	if err := c.call(ctx, http.MethodGet, "/api/v0/policies", nil, &ps); err != nil {
		return err
	}
	var p *policyLine
	for i := range ps {
		if ps[i].ID == which || ps[i].Name == which {
			p = &ps[i]
		}
	}
	if p == nil {
		return fmt.Errorf("no policy %q you may run (see dtrcache policy list)", which)
	}
	action := map[string]string{string(policies.Promotion): policies.ActionPromote, string(policies.PushMirroring): "push_mirror",
		string(policies.PollMirroring): policies.ActionPollMirror}[p.Kind]
	var res struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	body := map[string]any{"action": action, "parameters": map[string]string{"policyID": p.ID}}
	if err := c.call(ctx, http.MethodPost, "/api/v0/jobs", body, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d job(s) queued for policy %s\n", len(res.Jobs), which)
	for _, j := range res.Jobs {
		fmt.Fprintf(stdout, "  %s %s\n", j.ID, j.State)
	}
	if !wait || len(res.Jobs) == 0 {
		return nil
	}
	return waitJobs(ctx, c, res.Jobs, stdout)
}

// waitJobs follows jobs until each has ended: a status line redrawn on a
// terminal, one line per change otherwise. A poll job's copies are
// followed too. It fails if any job failed.
func waitJobs(ctx context.Context, c *apiClient, js []jobs.Job, out io.Writer) error {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	pending := map[string]jobs.Job{}
	for _, j := range js {
		pending[j.ID] = j
	}
	last := map[string]string{}
	failed := 0
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		var bytes int64
		running := 0
		for id := range pending {
			var j jobs.Job
			if err := c.call(ctx, http.MethodGet, "/api/v0/jobs/"+id, nil, &j); err != nil {
				return err
			}
			bytes += j.Progress.BytesDone
			line := fmt.Sprintf("%s %s %s attempt %d, %s, %d/%d blobs", j.ID, j.Action, j.State, j.Attempts,
				progress.Human(j.Progress.BytesDone, "B"), j.Progress.BlobsDone, j.Progress.BlobsTotal)
			if j.LastError != "" {
				line += ": " + j.LastError
			}
			if !tty && last[id] != string(j.State)+j.LastError {
				fmt.Fprintln(out, line)
				last[id] = string(j.State) + j.LastError
			}
			if j.State == jobs.Running {
				running++
			}
			if j.State.Terminal() {
				if tty {
					fmt.Fprintf(out, "\r\033[K%s\n", line)
				}
				if j.State != jobs.Done {
					failed++
				}
				delete(pending, id)
				if j.Action == policies.ActionPollMirror && j.State == jobs.Done {
					var r policies.PollResult
					json.Unmarshal(j.Result, &r)
					follow, _ := followPolled(ctx, c, j.PolicyID, len(r.Queued))
					for _, f := range follow {
						pending[f.ID] = f
					}
				}
			}
		}
		if tty && len(pending) > 0 {
			fmt.Fprintf(out, "\r\033[K%d job(s) left, %d running, %s so far", len(pending), running, progress.Human(bytes, "B"))
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d job(s) did not finish done", failed)
	}
	return nil
}

// followPolled returns the newest n copy jobs of a poll-mirroring policy.
func followPolled(ctx context.Context, c *apiClient, policyID string, n int) ([]jobs.Job, error) {
	if n == 0 {
		return nil, nil
	}
	var res struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	q := url.Values{"policy": {policyID}, "action": {policies.ActionPollMirrorTag}, "limit": {fmt.Sprint(n)}}
	err := c.call(ctx, http.MethodGet, "/api/v0/jobs?"+q.Encode(), nil, &res)
	return res.Jobs, err
}

func policyJobs(ctx context.Context, c *apiClient, state, policyID string, limit int, out io.Writer) error {
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	if state != "" {
		q.Set("state", state)
	}
	if policyID != "" {
		q.Set("policy", policyID)
	}
	var res struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/v0/jobs?"+q.Encode(), nil, &res); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACTION\tPOLICY\tSTATE\tATTEMPTS\tBYTES\tCREATED\tERROR")
	for _, j := range res.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", j.ID, j.Action, j.PolicyID, j.State, j.Attempts,
			progress.Human(j.Progress.BytesDone, "B"), j.CreatedAt.Format(time.RFC3339), j.LastError)
	}
	return tw.Flush()
}
