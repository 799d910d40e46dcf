package natstest

// RunClusterWith is RunCluster with its port picker and readiness wait
// replaced, so a test can hand it a port that is taken.
var RunClusterWith = runCluster
