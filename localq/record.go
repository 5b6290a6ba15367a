package localq

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	bolt "go.etcd.io/bbolt"
)

// record is a job as stored: the bounty in its documented wire form, the
// kept answer in psengine.Analysis's own encoding (every field), and where
// the job stands. A pending job's record (bucketJobs) leaves out its
// answer and its scanning mark, which are kept in buckets of their own
// (see putJob); a dead letter's has them.
type record struct {
	V        int                `json:"v"`
	ID       string             `json:"id"`
	Key      string             `json:"key,omitempty"`
	Attempt  int                `json:"attempt"`
	Accepted time.Time          `json:"accepted,omitzero"`
	Bounty   psengine.Bounty    `json:"bounty"`
	Answer   *psengine.Analysis `json:"answer,omitempty"`
	// Scanning marks a job whose scan started in this process (see
	// broker.ScanMarker) and whose answer is not kept yet: found so by
	// the next Open, the process died while scanning it.
	Scanning bool `json:"scanning,omitempty"`
	// Suspect marks a job found scanning after a death: it runs alone.
	Suspect bool `json:"suspect,omitempty"`
	// Crashes counts the deaths while it was scanned alone.
	Crashes int    `json:"crashes,omitempty"`
	Final   string `json:"final,omitempty"`
	// Running is version 1's mark of a job a consumer took after Open.
	Running bool `json:"running,omitempty"`
}

// stored is a job with what the store records of it besides.
type stored struct {
	job      broker.Job
	scanning bool
	crashes  int
}

// recordVersion is the version of the record format written; versions 1
// and 2 (which kept a pending job's answer and mark in its record) are
// read too. A record of another version is refused (errBadRecord) rather
// than misread.
const recordVersion = 3

var errBadRecord = errors.New("localq: unreadable record")

func encodeJob(s stored) ([]byte, error) {
	job := s.job
	r := record{V: recordVersion, ID: job.ID, Key: job.Key, Attempt: job.Attempt, Accepted: job.Accepted, Bounty: job.Bounty,
		Scanning: s.scanning, Suspect: job.Suspect, Crashes: s.crashes, Final: job.Final, Answer: job.Answer}
	return json.Marshal(r)
}

// decodeJob reads a stored record. The store is this process's own file,
// yet a damaged one must cost its records, not the process: any input gives
// a job or an error wrapping errBadRecord.
func decodeJob(data []byte) (stored, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return stored{}, fmt.Errorf("%w: %w", errBadRecord, err)
	}
	switch {
	case r.V < 1 || r.V > recordVersion:
		return stored{}, fmt.Errorf("%w: version %d, want %d", errBadRecord, r.V, recordVersion)
	case r.ID == "":
		return stored{}, fmt.Errorf("%w: no job id", errBadRecord)
	case r.Attempt < 1:
		return stored{}, fmt.Errorf("%w: attempt %d", errBadRecord, r.Attempt)
	case r.Crashes < 0:
		return stored{}, fmt.Errorf("%w: crashes %d", errBadRecord, r.Crashes)
	}
	if err := r.Bounty.Validate(); err != nil {
		return stored{}, fmt.Errorf("%w: %w", errBadRecord, err)
	}
	job := broker.Job{ID: r.ID, Key: r.Key, Attempt: r.Attempt, Accepted: r.Accepted, Bounty: r.Bounty,
		Suspect: r.Suspect, Final: r.Final, Answer: r.Answer}
	return stored{job: job, scanning: r.Scanning || r.Running, crashes: r.Crashes}, nil
}

// readJob reads the pending job stored under key, whose record is v: the
// record with its kept answer and scanning mark. A kept answer ends the
// job's suspicion and its mark. An answer that cannot be read is left out
// (the job is scanned again).
func readJob(tx *bolt.Tx, key, v []byte) (stored, error) {
	s, err := decodeJob(v)
	if err != nil {
		return s, err
	}
	if tx.Bucket(bucketMarks).Get(key) != nil {
		s.scanning = true
	}
	if data := tx.Bucket(bucketAnswers).Get(key); data != nil {
		var a psengine.Analysis
		if json.Unmarshal(data, &a) == nil {
			s.job.Answer = &a
		}
	}
	if s.job.Answer != nil {
		s.job.Suspect, s.scanning = false, false
	}
	return s, nil
}

// putJob stores s, a pending job, under key: its record, its kept answer
// (or none) and its scanning mark (or none).
func putJob(tx *bolt.Tx, key []byte, s stored) error {
	answer := s.job.Answer
	s.job.Answer = nil
	data, err := encodeJob(stored{job: s.job, crashes: s.crashes})
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketJobs).Put(key, data); err != nil {
		return err
	}
	if err := deleteState(tx, key); err != nil {
		return err
	}
	if answer != nil {
		data, err := json.Marshal(answer)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketAnswers).Put(key, data); err != nil {
			return err
		}
	}
	if s.scanning {
		return tx.Bucket(bucketMarks).Put(key, []byte{})
	}
	return nil
}

// deleteJob removes the pending job stored under key.
func deleteJob(tx *bolt.Tx, key []byte) error {
	if err := tx.Bucket(bucketJobs).Delete(key); err != nil {
		return err
	}
	return deleteState(tx, key)
}

// deleteState removes the kept answer and the scanning mark stored under
// key.
func deleteState(tx *bolt.Tx, key []byte) error {
	if err := tx.Bucket(bucketAnswers).Delete(key); err != nil {
		return err
	}
	return tx.Bucket(bucketMarks).Delete(key)
}

// deadRecord is a dead letter as stored.
type deadRecord struct {
	Job json.RawMessage `json:"job"` // a record
	Err string          `json:"err"`
	At  time.Time       `json:"at"`
}

// seqKey is the store key of sequence number n: big-endian, so that the
// store's order is the order of arrival.
func seqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// seenKey is the bucketSeen key of a job remembered until until: the
// time (Unix nanoseconds) then the job's sequence number, big-endian.
func seenKey(until time.Time, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(until.UnixNano())), seq)
}

func seenTime(k []byte) (time.Time, bool) {
	if len(k) != 16 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k))), true
}

// seenValue is the bucketSeen value of a job: its ID's length (uvarint),
// its ID, its Key.
func seenValue(id, key string) []byte {
	v := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(id)+len(key)), uint64(len(id)))
	return append(append(v, id...), key...)
}

func seenDecode(v []byte) (id, key string, ok bool) {
	n, size := binary.Uvarint(v)
	if size <= 0 || n > uint64(len(v)-size) || n == 0 {
		return "", "", false
	}
	v = v[size:]
	return string(v[:n]), string(v[n:]), true
}
