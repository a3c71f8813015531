package policy

import "fmt"

// Action is something a user may do to a repository.
type Action string

// The actions, from weakest to strongest. Each implies the ones before it.
const (
	ActionPull  Action = "pull"
	ActionPush  Action = "push"
	ActionAdmin Action = "admin"
)

// rank orders actions by strength; 0 means not an action.
func (a Action) rank() int {
	switch a {
	case ActionPull:
		return 1
	case ActionPush:
		return 2
	case ActionAdmin:
		return 3
	}
	return 0
}

// Team is a named group of users.
type Team struct {
	Name    string   `yaml:"name"`
	Members []string `yaml:"members"`
}

// Grant gives one user or one team (exactly one of the two) some actions.
type Grant struct {
	User    string   `yaml:"user,omitempty"`
	Team    string   `yaml:"team,omitempty"`
	Actions []Action `yaml:"actions"`
}

// RepoRule applies grants to the repositories matching Pattern. Public
// rules also let anyone, anonymous users included, pull.
type RepoRule struct {
	Pattern string  `yaml:"pattern"`
	Public  bool    `yaml:"public,omitempty"`
	Grants  []Grant `yaml:"grants"`
}

// AccessConfig is the access rules file, as plain values.
type AccessConfig struct {
	Admins       []string   `yaml:"admins"`
	Teams        []Team     `yaml:"teams"`
	Repositories []RepoRule `yaml:"repositories"`
}

// Access decides who may do what to which repository. It is immutable and
// safe for concurrent use. A nil *Access denies everything.
type Access struct {
	admins map[string]bool
	teams  map[string]map[string]bool // team -> members
	rules  []rule
}

type rule struct {
	pattern pattern
	public  bool
	grants  []grant
}

type grant struct {
	user, team string
	action     Action // the strongest action granted
}

// Decision is the outcome of Access.Decide.
type Decision struct {
	// Allowed says whether the action is allowed.
	Allowed bool
	// Reason says why, in a few words for the audit log.
	Reason string
}

// NewAccess checks c and compiles it. Errors name the offending field, as
// in `repositories[2].grants[0].team: unknown team "x"`.
func NewAccess(c AccessConfig) (*Access, error) {
	a := &Access{
		admins: make(map[string]bool),
		teams:  make(map[string]map[string]bool),
	}
	for i, name := range c.Admins {
		if name == "" {
			return nil, fmt.Errorf("policy: admins[%d]: empty user name", i)
		}
		a.admins[name] = true
	}
	for i, t := range c.Teams {
		if t.Name == "" {
			return nil, fmt.Errorf("policy: teams[%d].name: empty", i)
		}
		if _, dup := a.teams[t.Name]; dup {
			return nil, fmt.Errorf("policy: teams[%d].name: team %q defined twice", i, t.Name)
		}
		members := make(map[string]bool, len(t.Members))
		for j, m := range t.Members {
			if m == "" {
				return nil, fmt.Errorf("policy: teams[%d].members[%d]: empty user name", i, j)
			}
			members[m] = true
		}
		a.teams[t.Name] = members
	}
	for i, r := range c.Repositories {
		cr, err := a.compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("policy: repositories[%d].%w", i, err)
		}
		a.rules = append(a.rules, cr)
	}
	return a, nil
}

// compileRule checks one rule. Its errors start with the field path below
// the rule, to be prefixed by the caller.
func (a *Access) compileRule(r RepoRule) (rule, error) {
	p, err := compilePattern(r.Pattern)
	if err != nil {
		return rule{}, fmt.Errorf("pattern: %q: %w", r.Pattern, err)
	}
	cr := rule{pattern: p, public: r.Public}
	for j, g := range r.Grants {
		switch {
		case g.User != "" && g.Team != "":
			return rule{}, fmt.Errorf("grants[%d]: both user and team set; a grant names one of them", j)
		case g.User == "" && g.Team == "":
			return rule{}, fmt.Errorf("grants[%d]: neither user nor team set", j)
		}
		if _, ok := a.teams[g.Team]; g.Team != "" && !ok {
			return rule{}, fmt.Errorf("grants[%d].team: unknown team %q", j, g.Team)
		}
		if len(g.Actions) == 0 {
			return rule{}, fmt.Errorf("grants[%d].actions: empty", j)
		}
		cg := grant{user: g.User, team: g.Team}
		for k, act := range g.Actions {
			if act.rank() == 0 {
				return rule{}, fmt.Errorf("grants[%d].actions[%d]: unknown action %q (want pull, push or admin)", j, k, act)
			}
			if act.rank() > cg.action.rank() {
				cg.action = act
			}
		}
		cr.grants = append(cr.grants, cg)
	}
	return cr, nil
}

// IsAdmin reports whether user is an administrator. The anonymous user ""
// never is.
func (a *Access) IsAdmin(user string) bool {
	return a != nil && user != "" && a.admins[user]
}

// Decide says whether user ("" for anonymous) may perform action on repo.
// Everything is denied unless a rule allows it: admins may do everything;
// public rules allow pull to anyone; grants allow their actions and the
// weaker ones (admin implies push implies pull) to their user or team
// members. All rules that match repo count; the reason names the first one
// that allows the action.
func (a *Access) Decide(user string, repo string, action Action) Decision {
	who := user
	if who == "" {
		who = "anonymous"
	}
	switch {
	case a == nil:
		return deny("no access rules loaded")
	case action.rank() == 0:
		return deny(fmt.Sprintf("unknown action %q", action))
	case !validRepoName(repo):
		return deny(fmt.Sprintf("invalid repository name %q", repo))
	case a.IsAdmin(user):
		return allow(fmt.Sprintf("user %s is an admin", user))
	}
	for _, r := range a.rules {
		if !r.pattern.match(repo) {
			continue
		}
		if r.public && action == ActionPull {
			return allow(fmt.Sprintf("%s is public", r.pattern.raw))
		}
		if user == "" {
			continue
		}
		for _, g := range r.grants {
			if g.action.rank() < action.rank() {
				continue
			}
			if g.user == user {
				return allow(fmt.Sprintf("user %s has %s on %s", user, g.action, r.pattern.raw))
			}
			if g.team != "" && a.teams[g.team][user] {
				return allow(fmt.Sprintf("team %s grants %s on %s", g.team, g.action, r.pattern.raw))
			}
		}
	}
	return deny(fmt.Sprintf("no rule grants %s on %s to %s", action, repo, who))
}

func allow(reason string) Decision { return Decision{Allowed: true, Reason: reason} }
func deny(reason string) Decision  { return Decision{Allowed: false, Reason: reason} }
