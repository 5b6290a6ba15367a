package natsq_test

const workerEnv = "NATSQ_TEST_WORKER"

func runWorkerProcess() int { return 0 }
