// kubectl as Kubernetes v1.34.4 builds it (k8s.io/kubernetes/cmd/kubectl,
// copied: its package main is not importable, and requiring all of
// k8s.io/kubernetes for it would pin 29 staging modules by hand). Used by
// scripts/e2e-cluster.sh, which CI runs against the lab's API server.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Import to initialize client auth plugins.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
