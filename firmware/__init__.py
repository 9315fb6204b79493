# firmware: what only exists on the microcontroller and how it gets there.
# `image` says which files go into the firmware image; `board/` (issue 6)
# holds boot.py/main.py and the MCU adapters; the technician's tool is built
# on esptool and mpremote.
