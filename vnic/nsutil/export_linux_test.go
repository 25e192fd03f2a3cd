package nsutil

// Abandon drops the lease as a killed process would: the lock goes, the
// record and the namespace stay.
func (l *Lease) Abandon() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
