package policy

import (
	"fmt"
	"sort"
	"strings"
)

// CycleError is a loop of repositories formed by enabled promotion
// policies: Repositories starts and ends with the same repository, and
// Policies[i] promotes Repositories[i] to Repositories[i+1].
type CycleError struct {
	Repositories []string
	Policies     []string
}

// Error implements error, e.g.
// `policy: promotion policies form a loop: dev/app -> qa/app -> dev/app (policies "a", "b")`.
func (e *CycleError) Error() string {
	return fmt.Sprintf("%v: %s (policies %s)", ErrPromotionCycle,
		strings.Join(e.Repositories, " -> "), strings.Join(e.Policies, ", "))
}

// Unwrap returns ErrPromotionCycle.
func (e *CycleError) Unwrap() error { return ErrPromotionCycle }

// DetectPromotionCycle reports whether saving candidate next to existing
// would let enabled promotion policies loop: a -> b, b -> c, c -> a. A
// candidate whose ID is that of an existing policy replaces it (an
// update). It is conservative: rules and templates that might keep a loop
// from ever turning are not looked at, since any repository loop could
// copy tags forever. A loop through the candidate is reported first; a
// loop already among existing policies is reported too, so a set that
// loops can only be fixed by disabling or removing one of its policies.
// The error is a *CycleError wrapping ErrPromotionCycle.
func DetectPromotionCycle(existing []PromotionPolicy, candidate PromotionPolicy) error {
	all := make([]PromotionPolicy, 0, len(existing)+1)
	for _, p := range existing {
		if candidate.ID != "" && p.ID == candidate.ID {
			continue
		}
		all = append(all, p)
	}
	all = append(all, candidate)
	g := newPromotionGraph(all)
	if candidate.Enabled {
		// A path from the candidate's target back to its source closes a
		// loop through it.
		if path, pols := g.path(candidate.TargetRepository, candidate.SourceRepository); path != nil {
			return &CycleError{
				Repositories: append([]string{candidate.SourceRepository}, path...),
				Policies:     append([]string{label(candidate.ID, candidate.Name)}, pols...),
			}
		}
	}
	return g.anyCycle()
}

// CheckPromotionCycles reports whether enabled promotion policies of one
// set loop (see DetectPromotionCycle), as when the YAML form is loaded.
func CheckPromotionCycles(policies []PromotionPolicy) error {
	return newPromotionGraph(policies).anyCycle()
}

// promotionGraph has repositories as nodes and enabled policies as edges,
// kept sorted so that the loop reported does not depend on input order.
type promotionGraph struct {
	edges map[string][]promotionEdge
	nodes []string
}

type promotionEdge struct {
	to, policy string
}

func newPromotionGraph(policies []PromotionPolicy) *promotionGraph {
	g := &promotionGraph{edges: make(map[string][]promotionEdge)}
	for _, p := range policies {
		if !p.Enabled {
			continue
		}
		if _, ok := g.edges[p.SourceRepository]; !ok {
			g.nodes = append(g.nodes, p.SourceRepository)
		}
		g.edges[p.SourceRepository] = append(g.edges[p.SourceRepository], promotionEdge{p.TargetRepository, label(p.ID, p.Name)})
	}
	sort.Strings(g.nodes)
	for _, es := range g.edges {
		sort.Slice(es, func(i, j int) bool {
			if es[i].to != es[j].to {
				return es[i].to < es[j].to
			}
			return es[i].policy < es[j].policy
		})
	}
	return g
}

// path returns the shortest path of repositories from -> ... -> to, both
// ends included, and the policies along it, or nil. The path from a
// repository to itself is just that repository.
func (g *promotionGraph) path(from, to string) ([]string, []string) {
	if from == to {
		return []string{to}, nil
	}
	into := map[string]promotionEdge{} // node -> the edge it was reached by, "to" holding the previous node
	queue := []string{from}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, e := range g.edges[n] {
			if _, seen := into[e.to]; seen || e.to == from {
				continue
			}
			into[e.to] = promotionEdge{to: n, policy: e.policy}
			if e.to != to {
				queue = append(queue, e.to)
				continue
			}
			repos, pols := []string{to}, []string(nil)
			for m := to; m != from; m = into[m].to {
				repos = append([]string{into[m].to}, repos...)
				pols = append([]string{into[m].policy}, pols...)
			}
			return repos, pols
		}
	}
	return nil, nil
}

// anyCycle finds a loop anywhere in the graph by depth-first search.
func (g *promotionGraph) anyCycle() error {
	const (
		unvisited = iota
		onStack
		done
	)
	state := make(map[string]int)
	var stack []string
	var stackPols []string
	var found *CycleError
	var visit func(n string) bool
	visit = func(n string) bool {
		state[n] = onStack
		stack = append(stack, n)
		for _, e := range g.edges[n] {
			switch state[e.to] {
			case onStack:
				i := len(stack) - 1
				for stack[i] != e.to {
					i--
				}
				found = &CycleError{
					Repositories: append(append([]string(nil), stack[i:]...), e.to),
					Policies:     append(append([]string(nil), stackPols[i:]...), e.policy),
				}
				return true
			case unvisited:
				stackPols = append(stackPols, e.policy)
				if visit(e.to) {
					return true
				}
				stackPols = stackPols[:len(stackPols)-1]
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return false
	}
	for _, n := range g.nodes {
		if state[n] == unvisited && visit(n) {
			return found
		}
	}
	return nil
}
