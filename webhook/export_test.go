package webhook

// Reading reports how many bodies h is reading now, in all and from the
// source of remoteAddr (an IP and port), for tests to wait on a condition.
func Reading(h *Handler, remoteAddr string) (all, fromSource int) {
	all = len(h.reads)
	if h.sources != nil {
		fromSource = h.sources.reading(sourceOf(remoteAddr))
	}
	return all, fromSource
}
