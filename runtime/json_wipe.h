/* Routes jansson's allocations through an allocator that cleanses every
 * block when it is freed, so JSON text and values that held key material
 * leave nothing behind. Each program calls it once at start. */
#ifndef RUNTIME_JSON_WIPE_H
#define RUNTIME_JSON_WIPE_H

void json_use_wiping_allocator(void);

#endif
