/* The libFuzzer entry points of every harness, and the start shared by those
 * that parse JSON: jansson allocates through the wiping allocator, as in the
 * daemons (runtime/json_wipe.h). */
#ifndef TESTS_FUZZ_FUZZ_JSON_INIT_H
#define TESTS_FUZZ_FUZZ_JSON_INIT_H

#include <stddef.h>
#include <stdint.h>
#include "runtime/json_wipe.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_use_wiping_allocator();
    return 0;
}

#endif
