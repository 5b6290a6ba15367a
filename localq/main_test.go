package localq_test

import (
	"log/slog"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("LOCALQ_TEST_CHILD"); path != "" {
		runChild(path)
		os.Exit(0)
	}
	if path := os.Getenv("LOCALQ_TEST_POISON"); path != "" {
		runPoison(path)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func slogTo(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
