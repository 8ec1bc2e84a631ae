package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ElectionConfig names the Lease the agents of one cluster campaign for.
type ElectionConfig struct {
	// Namespace and LeaseName of the coordination.k8s.io Lease; Identity
	// tells the candidates apart (the pod name).
	Namespace, LeaseName, Identity string
	// LeaseDuration is how long followers wait after the last renewal
	// before taking over from a leader that died without releasing.
	// RenewDeadline is how long the leader keeps retrying a failed renewal
	// before it steps down; it must be shorter than LeaseDuration so a
	// leader cut off from the API server stops before anyone else starts.
	// RetryPeriod is the pause between attempts to acquire or renew.
	// Zero takes the defaults (DefaultLeaseDuration, ...).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// The defaults of Kubernetes' own controllers (kube-controller-manager's
// --leader-elect-* flags): a dead leader is replaced within ~15 s, one API
// server hiccup shorter than 10 s does not cost the lease, and a renewal
// every 2 s is negligible load.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// subscriberBuffer is how many state changes a subscriber may fall behind
// before the oldest unread one is dropped. Changes are seconds apart, so a
// reader that is not stuck never loses one; a stuck one cannot block the
// election.
const subscriberBuffer = 16

// leaderHelp is the gauge's help; a collector registered elsewhere under
// the same name must have the same help to be shared.
const leaderHelp = "1 while this agent holds the cluster's leader Lease (and does the cluster-wide work), else 0."

// Elector campaigns for a coordination.k8s.io Lease until ctx ends.
//
// What it promises: IsLeader (and Subscribe, the gauge) says true only
// between a successful write of the Lease naming this Elector and
// RenewDeadline after that write began, and says false before it releases
// the Lease. A follower takes over no earlier than LeaseDuration after the
// last renewal (or right after a release), so two Electors of one Lease
// never both say true, as long as their clocks run at the same rate and
// RenewDeadline < LeaseDuration leaves room for the caller to react.
// client-go alone would keep calling itself leader while it retries a
// renewal and then the release against an API server it cannot reach, past
// the moment a follower may take over.
type Elector struct {
	lec           leaderelection.LeaderElectionConfig
	renewDeadline time.Duration
	log           *slog.Logger

	leaderGauge prometheus.Gauge

	mu         sync.Mutex
	leader     bool
	validUntil time.Time   // of the last renewal; zero when not leading
	expiry     *time.Timer // steps down at validUntil
	subs       []chan bool
}

// NewElector checks cfg and builds an Elector; it does not campaign yet.
func NewElector(client kubernetes.Interface, cfg ElectionConfig, reg prometheus.Registerer, log *slog.Logger) (*Elector, error) {
	if client == nil {
		return nil, errors.New("leader election: no Kubernetes client")
	}
	if cfg.Namespace == "" || cfg.LeaseName == "" || cfg.Identity == "" {
		return nil, fmt.Errorf("leader election: namespace (%q), lease name (%q) and identity (%q) must all be set", cfg.Namespace, cfg.LeaseName, cfg.Identity)
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.RenewDeadline >= cfg.LeaseDuration {
		return nil, fmt.Errorf("leader election: renew deadline %s must be shorter than lease duration %s, or two leaders may overlap", cfg.RenewDeadline, cfg.LeaseDuration)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Elector{
		renewDeadline: cfg.RenewDeadline,
		log:           log.With("lease", cfg.Namespace+"/"+cfg.LeaseName, "identity", cfg.Identity),
		leaderGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_leader",
			Help: leaderHelp,
		}),
	}
	e.lec = leaderelection.LeaderElectionConfig{
		Lock: &watchedLock{
			Interface: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.LeaseName},
				Client:     client.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
			},
			e: e,
		},
		LeaseDuration: cfg.LeaseDuration,
		RenewDeadline: cfg.RenewDeadline,
		RetryPeriod:   cfg.RetryPeriod,
		// A clean shutdown empties the Lease so a follower takes over at its
		// next retry instead of after LeaseDuration.
		ReleaseOnCancel: true,
		Name:            cfg.LeaseName,
	}
	// Validates the durations the way client-go will at Run (which sets
	// the real callbacks).
	check := e.lec
	check.Callbacks = leaderelection.LeaderCallbacks{OnStartedLeading: func(context.Context) {}, OnStoppedLeading: func() {}}
	if _, err := leaderelection.NewLeaderElector(check); err != nil {
		return nil, fmt.Errorf("leader election (lease duration %s, renew deadline %s, retry period %s): %w", cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod, err)
	}
	if reg != nil {
		if err := reg.Register(e.leaderGauge); err != nil {
			// Another part of the agent already exports this gauge: set
			// that one, it means the same thing.
			var are prometheus.AlreadyRegisteredError
			g, ok := prometheus.Gauge(nil), false
			if errors.As(err, &are) {
				g, ok = are.ExistingCollector.(prometheus.Gauge)
			}
			if !ok {
				return nil, fmt.Errorf("leader election: register metrics: %w", err)
			}
			e.leaderGauge = g
		}
	}
	return e, nil
}

// Run campaigns until ctx ends, again after each lost term; it blocks.
// When ctx ends while leading, IsLeader turns false and then the Lease is
// released before Run returns (best effort: if the API server is
// unreachable, followers take over after LeaseDuration). It returns nil
// once ctx has ended.
func (e *Elector) Run(ctx context.Context) error {
	defer e.stepDown("stopped campaigning")
	for ctx.Err() == nil {
		lec := e.lec
		lec.Callbacks = leaderelection.LeaderCallbacks{
			// Leadership starts with the write watchedLock sees; client-go
			// calls this in a goroutine that may even run after the term
			// ended, so it must not set anything.
			OnStartedLeading: func(context.Context) {},
			OnStoppedLeading: func() { e.stepDown("lost the lease") },
			OnNewLeader: func(identity string) {
				e.log.Debug("leader observed", "leader", identity)
			},
		}
		le, err := leaderelection.NewLeaderElector(lec)
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
	}
	return nil
}

// IsLeader reports whether this process holds the Lease now.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Subscribe returns a channel that receives the current state first, then
// each change. The channel is never closed; after Run returns the state is
// false. A subscriber more than subscriberBuffer changes behind loses the
// oldest unread ones, never the latest.
func (e *Elector) Subscribe() <-chan bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := make(chan bool, subscriberBuffer)
	ch <- e.leader
	e.subs = append(e.subs, ch)
	return ch
}

// renewed records a successful write of the Lease naming us that began at
// start: we lead until start+RenewDeadline unless renewed again.
func (e *Elector) renewed(start time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	until := start.Add(e.renewDeadline)
	wait := time.Until(until)
	if wait <= 0 {
		return // the write took so long that the term it bought is over
	}
	e.validUntil = until
	if e.expiry != nil {
		e.expiry.Stop()
	}
	e.expiry = time.AfterFunc(wait, e.expire)
	e.setLocked(true, "")
}

func (e *Elector) expire() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.validUntil.IsZero() && !time.Now().Before(e.validUntil) {
		e.setLocked(false, "no renewal within the renew deadline")
	}
}

func (e *Elector) stepDown(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setLocked(false, reason)
}

func (e *Elector) setLocked(leader bool, reason string) {
	if !leader {
		e.validUntil = time.Time{}
		if e.expiry != nil {
			e.expiry.Stop()
			e.expiry = nil
		}
	}
	if e.leader == leader {
		return
	}
	e.leader = leader
	if leader {
		e.log.Info("became leader")
		e.leaderGauge.Set(1)
	} else {
		e.log.Info("stopped leading", "reason", reason)
		e.leaderGauge.Set(0)
	}
	for _, ch := range e.subs {
		select {
		case ch <- leader:
		default:
			// Full: drop the oldest unread change. Only setLocked sends,
			// under e.mu, so the send below cannot block.
			select {
			case <-ch:
			default:
			}
			ch <- leader
		}
	}
}

// watchedLock is the Lease lock with every write reported to the Elector:
// the only moments client-go learns it (still) leads.
type watchedLock struct {
	resourcelock.Interface
	e *Elector
}

func (l *watchedLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	return l.write(ctx, r, l.Interface.Create)
}

func (l *watchedLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	return l.write(ctx, r, l.Interface.Update)
}

func (l *watchedLock) write(ctx context.Context, r resourcelock.LeaderElectionRecord, write func(context.Context, resourcelock.LeaderElectionRecord) error) error {
	if r.HolderIdentity != l.Identity() {
		// The release: stop claiming before anyone else can start.
		l.e.stepDown("released the lease")
		return write(ctx, r)
	}
	start := time.Now()
	if err := write(ctx, r); err != nil {
		return err
	}
	l.e.renewed(start)
	return nil
}
