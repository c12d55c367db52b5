package tracker

// TEMPORARY, deleted when the status engineer's Writer.ChangeStatus lands on
// main (git merge main): the types of its API, so the shop handlers compile.
// The handlers call ChangeStatus through statusChanger, which a Writer
// without the method does not satisfy; until then a status change answers
// 503 storage_unavailable.

import (
	"time"

	"github.com/google/uuid"
)

type StatusChange struct {
	OfferIDs   []int64
	GoalID     int64
	AdvOrderID string
	To         string
	Source     string
	At         time.Time
}

type ChangeOutcome uint8

const (
	ChangeApplied ChangeOutcome = iota
	ChangeSame
	ChangeInvalid
)

type StatusChangeResult struct {
	ConversionID    uuid.UUID
	OfferID, GoalID int64
	From, To        string
	Outcome         ChangeOutcome
}
