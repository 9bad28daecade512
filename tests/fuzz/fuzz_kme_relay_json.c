/* Fuzzes the relay hop message in its JSON form as the next KME decodes it
 * (kme_relay_from_json, then kme_relay_check; api/kme_relay.h). What decodes
 * must pass the checks and come back the same through both forms. */
#include <stdint.h>
#include "api/kme_relay.h"
#include "tests/fuzz/fuzz_json_init.h"
#include "tests/fuzz/relay_roundtrip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kme_relay_msg m;
    etsi_problem p;
    if (kme_relay_from_json((const char *)data, size, &m, &p) != 0)
        return 0;
    relay_roundtrip(&m);
    kme_relay_clear(&m);
    return 0;
}
