"""The technician's tool, `ummc-gateway` (issue 6, item 2): flash, provision,
pair, doctor and label a gateway, on a real board over a serial port
(esptool + mpremote) or on a virtual gateway's state directory.

Modules: cli (command line, exit codes), i18n (messages in fr/ar/en),
console (what the technician sees: lines, checks, progress bars, questions),
target (where the gateway lives: board or virtual), boardscripts (the
MicroPython snippets run on a board), flash, provision, configio (reading
and writing the gateway's config.json), label (QR labels), pair, doctor.
CPython only; never in the firmware image. docs/technician.md is the
user's guide."""
