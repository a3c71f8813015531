// Package jobs is the origin's durable job queue and the runner that works
// it off: every policy trigger (a push, a poll interval, an explicit run)
// becomes a Job in the state store before anything is copied, and a job is
// a state machine with one writer at a time.
//
//	waiting ──claim──▶ running ──▶ done | error | cancelled
//	   ▲                  │
//	   └── retry (backoff)┘        (transient failures, a lost replica)
//
// Every transition is one conditional transaction on the job's record and
// its index keys, made before the runner acts on it. A runner claims a job
// (state.Store.Claim: a lease on etcd) before it moves it to running, and
// stops work the moment the claim is lost; a job left running by a replica
// that died (or a process that was killed) has no live claim, so the next
// runner to look claims it and runs it again, resuming from its last
// checkpoint.
//
// At most one job per Key is open (waiting or running): enqueueing a key
// whose job is waiting changes nothing; one whose job is running marks it
// for one follow-up run, queued when it ends.
package jobs

import (
	"encoding/json"
	"time"
)

// State is where a job is in its life.
type State string

// The states of a job.
const (
	Waiting   State = "waiting"
	Running   State = "running"
	Done      State = "done"
	Error     State = "error"
	Cancelled State = "cancelled"
)

// Terminal reports whether a job in state s is finished.
func (s State) Terminal() bool { return s == Done || s == Error || s == Cancelled }

// ValidState reports whether s names a state.
func ValidState(s string) bool {
	switch State(s) {
	case Waiting, Running, Done, Error, Cancelled:
		return true
	}
	return false
}

// Job is one unit of work, as stored and as the API shows it.
type Job struct {
	// ID is unique and sorts by creation time.
	ID string `json:"id"`
	// Action says what the job does ("promote", "push_mirror",
	// "poll_mirror", …); the runner picks the executor by it.
	Action string `json:"action"`
	// PolicyID is the policy that made the job, if any.
	PolicyID string `json:"policyID,omitempty"`
	// Key, if set, allows one open job at a time (a policy and a tag).
	Key string `json:"key,omitempty"`
	// Params are the executor's input.
	Params json.RawMessage `json:"parameters,omitempty"`

	State State `json:"state"`
	// Attempts counts the runs started; MaxAttempts bounds them for
	// transient failures.
	Attempts    int    `json:"attempts"`
	MaxAttempts int    `json:"maxAttempts"`
	LastError   string `json:"lastError,omitempty"`
	// Replica is the origin replica running the job, or the last one.
	Replica string `json:"replica,omitempty"`
	// FollowUp is set when the job's key was triggered again while it
	// ran: one more run is queued when it ends.
	FollowUp bool `json:"followUp,omitempty"`
	// Progress is the executor's last report.
	Progress Progress `json:"progress"`
	// Checkpoint is the executor's resume state (opaque here).
	Checkpoint json.RawMessage `json:"checkpoint,omitempty"`
	// Result is the executor's output of the last finished run.
	Result json.RawMessage `json:"result,omitempty"`

	CreatedAt time.Time `json:"createdAt"`
	// ScheduledAt is when the job may run (next attempt after a backoff).
	ScheduledAt time.Time `json:"scheduledAt"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	EndedAt     time.Time `json:"endedAt,omitzero"`
	UpdatedAt   time.Time `json:"lastUpdated"`
	// FollowUpOf is the job whose follow-up run this is.
	FollowUpOf string `json:"followUpOf,omitempty"`

	// Log has the job's last log lines (state changes, retries, errors).
	Log []LogLine `json:"log,omitempty"`
}

// Progress is what a running job reports.
type Progress struct {
	BytesDone  int64 `json:"bytesDone"`
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	BlobsDone  int   `json:"blobsDone"`
	BlobsTotal int   `json:"blobsTotal,omitempty"`
	// Current names what is being worked on (a blob digest, a tag).
	Current string `json:"current,omitempty"`
}

// LogLine is one line of a job's log.
type LogLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
}

// Limits of what a job record holds.
const (
	maxLogLines   = 100
	maxLineLength = 1024
	maxErrorText  = 4096
)

func (j *Job) logf(now time.Time, level, msg string) {
	if len(msg) > maxLineLength {
		msg = msg[:maxLineLength] + "…"
	}
	j.Log = append(j.Log, LogLine{Time: now, Level: level, Message: msg})
	if n := len(j.Log); n > maxLogLines {
		j.Log = append(j.Log[:0:0], j.Log[n-maxLogLines:]...)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
