package api

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxSecretSize is the most data a Secret holds (1 MiB), as Kubernetes
// limits it.
const MaxSecretSize = 1 << 20

// DefaultSecret merges stringData into data (stringData wins) and
// defaults the type to Opaque, as the API server does on write.
func DefaultSecret(s *corev1.Secret) {
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
}

// ValidateSecret checks a Secret as the API server does: keys, the total
// size, and the keys its type requires. A kubernetes.io/tls Secret needs
// tls.crt and tls.key; when they are not empty (cert-manager creates them
// empty before issuing) they must hold PEM: a CERTIFICATE block in
// tls.crt, a PRIVATE KEY block in tls.key. Whether they form a usable
// pair is a warning (SecretWarnings), as the proxy falls back to its
// default certificate for a broken one.
func ValidateSecret(s *corev1.Secret) field.ErrorList {
	dp := field.NewPath("data")
	var errs field.ErrorList
	size := 0
	for k, v := range s.Data {
		for _, m := range utilvalidation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(dp.Key(k), k, m))
		}
		size += len(v)
	}
	if size > MaxSecretSize {
		errs = append(errs, field.TooLong(dp, "", MaxSecretSize))
	}
	switch s.Type {
	case corev1.SecretTypeTLS:
		for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
			v, ok := s.Data[key]
			if !ok {
				errs = append(errs, field.Required(dp.Key(key), ""))
				continue
			}
			if len(v) == 0 {
				continue
			}
			if msg := pemCheck(key, v); msg != "" {
				errs = append(errs, field.Invalid(dp.Key(key), "<secret contents redacted>", msg))
			}
		}
	case corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg:
		key := corev1.DockerConfigJsonKey
		if s.Type == corev1.SecretTypeDockercfg {
			key = corev1.DockerConfigKey
		}
		v, ok := s.Data[key]
		if !ok {
			errs = append(errs, field.Required(dp.Key(key), ""))
			break
		}
		if err := json.Unmarshal(v, &map[string]any{}); err != nil {
			errs = append(errs, field.Invalid(dp.Key(key), "<secret contents redacted>", err.Error()))
		}
	case corev1.SecretTypeBasicAuth:
		_, u := s.Data[corev1.BasicAuthUsernameKey]
		_, p := s.Data[corev1.BasicAuthPasswordKey]
		if !u && !p {
			errs = append(errs, field.Required(dp.Key(corev1.BasicAuthUsernameKey), ""), field.Required(dp.Key(corev1.BasicAuthPasswordKey), ""))
		}
	case corev1.SecretTypeSSHAuth:
		if len(s.Data[corev1.SSHAuthPrivateKey]) == 0 {
			errs = append(errs, field.Required(dp.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	}
	return errs
}

// pemCheck says what is wrong with the PEM of tls.crt or tls.key, or "".
func pemCheck(key string, data []byte) string {
	want := "CERTIFICATE"
	if key == corev1.TLSPrivateKeyKey {
		want = "PRIVATE KEY"
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if key == corev1.TLSCertKey && b.Type == want || key == corev1.TLSPrivateKeyKey && strings.HasSuffix(b.Type, want) {
			return ""
		}
	}
	return fmt.Sprintf("must be PEM-encoded: no %s block found", want)
}

// validateSecretUpdate refuses what the API server refuses: a new type,
// and any change of the data of an immutable Secret.
func validateSecretUpdate(old, new *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	if old.Type != new.Type {
		errs = append(errs, field.Invalid(field.NewPath("type"), new.Type, "field is immutable"))
	}
	if old.Immutable != nil && *old.Immutable {
		if new.Immutable == nil || !*new.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
		if !sameData(old.Data, new.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
	}
	return errs
}

func sameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// SecretWarnings warns about a kubernetes.io/tls Secret whose tls.crt and
// tls.key are not a key pair Go's TLS stack loads: it is stored (the API
// server would), but the ingress proxy serves its default certificate for
// its hosts.
func SecretWarnings(s *corev1.Secret) []string {
	if s.Type != corev1.SecretTypeTLS {
		return nil
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return nil
	}
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		return []string{fmt.Sprintf("secret %q: tls.crt and tls.key are not a usable key pair (%v); the ingress serves its default certificate instead", s.Name, err)}
	}
	return nil
}

// Redacted is what `get -o yaml|json|jsonpath` shows for a Secret's value
// of n bytes: the values are never printed. It is not base64, so a
// manifest saved from `get` is refused by `apply` rather than storing it.
func Redacted(n int) string { return fmt.Sprintf("(redacted, %d bytes)", n) }

// redactSecret is the Secret as `get` prints it: every data value
// replaced by Redacted(len).
func redactSecret(o Object) any {
	s := o.(*corev1.Secret)
	b, err := json.Marshal(s)
	if err != nil {
		return map[string]any{}
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return map[string]any{}
	}
	if len(s.Data) > 0 {
		data := map[string]any{}
		for k, v := range s.Data {
			data[k] = Redacted(len(v))
		}
		m["data"] = data
	}
	if len(s.StringData) > 0 {
		sd := map[string]any{}
		for k, v := range s.StringData {
			sd[k] = Redacted(len(v))
		}
		m["stringData"] = sd
	}
	return m
}

func secretColumns() []Column {
	return []Column{
		nameColumn,
		{Name: "TYPE", Cell: func(o Object) string { return string(o.(*corev1.Secret).Type) }},
		{Name: "DATA", Cell: func(o Object) string { return fmt.Sprint(len(o.(*corev1.Secret).Data)) }},
		ageColumn,
	}
}
