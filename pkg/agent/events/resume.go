package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/kubernetes"
)

// Keys of the resume ConfigMap's data.
const (
	keyResourceVersion = "resourceVersion"
	keyShipped         = "shipped"
	keyUpdatedBy       = "updatedBy"
	keyUpdatedAt       = "updatedAt"
)

// resumePoint is what every candidate reads when it becomes leader: every
// change of an Event up to ResourceVersion (an etcd revision, comparable
// since Kubernetes' comparable resource versions, KEP-5504) is in the
// gateway, and Shipped are the occurrences of the last acknowledged push,
// so an object last changed at the boundary is known to be shipped.
//
// It lives in its own ConfigMap, not on the Lease: client-go's leader
// election writes the Lease from its cached copy, and any other writer
// would make its renewals conflict.
type resumePoint struct {
	ResourceVersion string
	Shipped         []occurrence
}

// resumeStore reads and writes the resume ConfigMap.
type resumeStore struct {
	client          kubernetes.Interface
	namespace, name string
	identity        string
}

// load returns the resume point; a missing ConfigMap is the zero point
// (first leader of the cluster).
func (s *resumeStore) load(ctx context.Context) (resumePoint, error) {
	cm, err := s.client.CoreV1().ConfigMaps(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return resumePoint{}, nil
	}
	if err != nil {
		return resumePoint{}, fmt.Errorf("read resume point %s/%s: %w", s.namespace, s.name, err)
	}
	return parseResume(cm)
}

func parseResume(cm *corev1.ConfigMap) (resumePoint, error) {
	p := resumePoint{ResourceVersion: cm.Data[keyResourceVersion]}
	if p.ResourceVersion != "" {
		if _, err := resourceversion.CompareResourceVersion(p.ResourceVersion, p.ResourceVersion); err != nil {
			return resumePoint{}, fmt.Errorf("resume point %s/%s: %w", cm.Namespace, cm.Name, err)
		}
	}
	if v := cm.Data[keyShipped]; v != "" {
		if err := json.Unmarshal([]byte(v), &p.Shipped); err != nil {
			return resumePoint{}, fmt.Errorf("resume point %s/%s: %s: %w", cm.Namespace, cm.Name, keyShipped, err)
		}
	}
	return p, nil
}

// save writes p unless the ConfigMap already holds a later resource
// version (written by a newer leader: never move it back). It reads before
// writing and writes with the read's resourceVersion as precondition, so
// two writers cannot overwrite each other unseen.
func (s *resumeStore) save(ctx context.Context, p resumePoint) error {
	shipped, err := json.Marshal(p.Shipped)
	if err != nil {
		return err
	}
	data := map[string]string{
		keyResourceVersion: p.ResourceVersion,
		keyShipped:         string(shipped),
		keyUpdatedBy:       s.identity,
		keyUpdatedAt:       time.Now().UTC().Format(time.RFC3339Nano),
	}
	cms := s.client.CoreV1().ConfigMaps(s.namespace)
	cm, err := cms.Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: s.name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "tributary-agent"}},
			Data: data,
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create resume point %s/%s: %w", s.namespace, s.name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read resume point %s/%s: %w", s.namespace, s.name, err)
	}
	if cur := cm.Data[keyResourceVersion]; cur != "" {
		if c, err := resourceversion.CompareResourceVersion(cur, p.ResourceVersion); err == nil && c > 0 {
			return fmt.Errorf("resume point %s/%s is at %s, after %s: another leader moved on", s.namespace, s.name, cur, p.ResourceVersion)
		}
	}
	cm.Data = data
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update resume point %s/%s: %w", s.namespace, s.name, err)
	}
	return nil
}
