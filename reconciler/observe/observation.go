package observe

// Observation is how a pass brought the store up to date: by listing
// everything, or by re-reading only the objects Docker's events named
// since the pass before.
type Observation struct {
	// Full is set when the pass listed everything; Why says why.
	Full bool   `json:"full"`
	Why  string `json:"why,omitempty"`
	// Services and Networks count the objects re-read one by one;
	// Records is set when the records were listed again.
	Services int  `json:"services,omitempty"`
	Networks int  `json:"networks,omitempty"`
	Records  bool `json:"records,omitempty"`
}
