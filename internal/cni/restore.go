package cni

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/podnet/podnet/internal/nft"
)

// RestoreDatapath re-adds to `inet podnet` the elements of every attachment
// recorded for network under dataDir (the conflist's dataDir, empty for
// DefaultDataDir), through dp. The agent calls it when it starts, after
// nft Ensure, so that a table emptied or edited while the agent was down
// comes back to what the plugin's records say: a killed agent restarts
// into the same state. Adding an element that exists changes nothing. It
// runs under the network lock, so no ADD or GC of this network interleaves
// with it, and returns how many attachments it programmed.
func RestoreDatapath(ctx context.Context, dataDir, network string, dp nft.Datapath) (int, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	dir := filepath.Join(filepath.Clean(dataDir), network)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return 0, nil // no attachment was ever made
	}
	n, err := openNetwork(&Config{Name: network, DataDir: dir})
	if err != nil {
		return 0, fmt.Errorf("restore datapath of network %q: %w", network, err)
	}
	unlock, err := n.lock()
	if err != nil {
		return 0, fmt.Errorf("restore datapath of network %q: %w", network, err)
	}
	defer unlock()
	keys, err := n.store.RecordKeys()
	if err != nil {
		return 0, fmt.Errorf("restore datapath of network %q: %w", network, err)
	}
	var errs []error
	done := 0
	for _, k := range keys {
		rec, err := n.record(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := dp.Add(ctx, rec.attachment()); err != nil {
			errs = append(errs, fmt.Errorf("attachment %s (container %s): %w", k, rec.ContainerID, err))
			continue
		}
		done++
	}
	if err := errors.Join(errs...); err != nil {
		return done, fmt.Errorf("restore datapath of network %q: %w", network, err)
	}
	return done, nil
}
