// Command kube-control-plane runs a real Kubernetes control plane for tests and demos:
// embedded etcd, kube-apiserver and kube-controller-manager, all built from the
// upstream Go modules. It is one multi-call binary so that one (slow) build and link
// produces every piece:
//
//	kube-control-plane --data-dir DIR [--port N]   the supervisor (default)
//	kube-control-plane kube-apiserver ARGS...      upstream kube-apiserver
//	kube-control-plane kube-controller-manager ... upstream kube-controller-manager
//	kubectl ARGS... (argv[0] named kubectl)         upstream kubectl
//	kube-control-plane kube-scheduler|kubelet|kube-proxy ARGS...
//	                                                upstream components, for a node
//	kube-control-plane node --data-dir DIR ...      a node: containerd + kubelet + kube-proxy
//
// The apiserver and controller manager run as child processes because each of them
// installs its own process-wide signal handling and global flag sets.
package main

import (
	"context"
	"os"
	"path/filepath"

	_ "time/tzdata"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if filepath.Base(os.Args[0]) == "kubectl" {
		runKubectl()
		return
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "kube-apiserver":
			os.Args = os.Args[1:]
			os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
		case "kube-controller-manager":
			os.Args = os.Args[1:]
			os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
		case "kube-scheduler":
			os.Args = os.Args[1:]
			os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
		case "kubelet":
			os.Args = os.Args[1:]
			os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
		case "kube-proxy":
			os.Args = os.Args[1:]
			os.Exit(cli.Run(proxy.NewProxyCommand()))
		case "node":
			os.Exit(runNode(os.Args[2:]))
		case "kubectl":
			os.Args = os.Args[1:]
			runKubectl()
			return
		}
	}
	os.Exit(supervise(os.Args[1:]))
}

func runKubectl() {
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
		kubectlutil.CheckErr(err)
	}
}
