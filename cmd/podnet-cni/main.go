// Command podnet-cni is podnet's CNI 1.1 plugin. See internal/cni.
package main

import "github.com/podnet/podnet/internal/cni"

func main() { cni.Main() }
