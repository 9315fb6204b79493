# Nurse feedback: what the gateway shows for each reading.
#
# A reading is `captured` when it is decoded and safe in the journal,
# `buffered` while the link is down, `delivered` when the fleet server has
# committed it (the end-to-end ack covers it), and `error` when it could not
# be decoded or the server rejected it. The indicator never shows a
# measured value (personal data); it shows the reading's journal number.
# Boards implement the same methods with an LED pattern, a buzzer or a small
# display (firmware/); on a host the console indicator prints one line.


class Indicator:
    """Interface and no-op default."""

    def captured(self, seq):
        pass

    def buffered(self, seq):
        pass

    def delivered(self, upto, rejected):
        """Every reading with seq <= upto is committed; `rejected` were kept as errors."""

    def error(self, what, reason):
        pass

    def link(self, up):
        pass


class ConsoleIndicator(Indicator):
    def __init__(self, name, out=print):
        self.name = name
        self.out = out

    def captured(self, seq):
        self.out("[%s] reading #%d captured" % (self.name, seq))

    def buffered(self, seq):
        self.out("[%s] reading #%d buffered (link down)" % (self.name, seq))

    def delivered(self, upto, rejected):
        self.out("[%s] delivered up to #%d" % (self.name, upto))
        for seq in rejected:
            self.out("[%s] reading #%d REJECTED by the server" % (self.name, seq))

    def error(self, what, reason):
        self.out("[%s] ERROR %s: %s" % (self.name, what, reason))

    def link(self, up):
        self.out("[%s] link %s" % (self.name, "up" if up else "down"))


class RecordingIndicator(Indicator):
    """Keeps every event; for tests and the simulator's statistics."""

    def __init__(self):
        self.events = []

    def captured(self, seq):
        self.events.append(("captured", seq))

    def buffered(self, seq):
        self.events.append(("buffered", seq))

    def delivered(self, upto, rejected):
        self.events.append(("delivered", upto, list(rejected)))

    def error(self, what, reason):
        self.events.append(("error", what, reason))

    def link(self, up):
        self.events.append(("link", up))
