# CPython-only host adapters (bumble BLE, ...) for Linux gateways; not in the firmware image.
