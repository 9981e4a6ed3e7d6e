package platformdb

import "slices"

// Alarms are the alarms etcd holds for this member, by name ("NOSPACE":
// the backend quota is reached and the store refuses writes until it is
// compacted, defragmented and the alarm disarmed; "CORRUPT"). Read from the
// member's memory: no request, no I/O.
func (s *Etcd) Alarms() []string {
	var out []string
	id := s.srv.Server.MemberID()
	for _, a := range s.srv.Server.Alarms() {
		if a.MemberID == uint64(id) {
			out = append(out, a.Alarm.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
