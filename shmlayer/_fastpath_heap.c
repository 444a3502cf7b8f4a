/* shmlayer._fastpath: the payload heap (a buddy allocator, _heap.py is the reference):
 * finding, taking and freeing blocks with exactly the stores _heap.Heap makes. */
#include "_fastpath.h"

/* ----------------------------------------------------------------------- heap */

static inline uint64_t free_head(uint32_t order) { return H_HEAP_FREE + 4ull * order; }

static void heap_push(FastPath *s, uint32_t block, uint32_t order) {
    uint32_t head = *U32(s, free_head(order));
    *U32(s, block + B_TAG) = (BLOCK_FREE << 8) | order;
    *U32(s, block + B_REFS) = 0;
    *U32(s, block + B_LENGTH) = head;
    if (head && block_ok(s, head))
        *U32(s, head + B_REFS) = block;
    *U32(s, free_head(order)) = block;
}

static void heap_unlink(FastPath *s, uint32_t block, uint32_t order) {
    uint32_t prev = *U32(s, block + B_REFS);
    uint32_t next = *U32(s, block + B_LENGTH);
    if (!prev)
        *U32(s, free_head(order)) = next;
    else if (block_ok(s, prev))
        *U32(s, prev + B_LENGTH) = next;
    if (next && block_ok(s, next))
        *U32(s, next + B_REFS) = prev;
}

uint32_t order_for(Py_ssize_t nbytes) {
    uint64_t need = (uint64_t)nbytes + BLOCK_SIZE;
    uint32_t order = 64 - (uint32_t)__builtin_clzll(need - 1);
    return order < MIN_ORDER ? MIN_ORDER : order;
}

/* The free block ``heap_alloc`` would split, or 0 (the Python path then coalesces or
 * sweeps). Reads only. A head outside the heap is damage: recovery rebuilds the free
 * lists before the Python path would follow it. */
uint32_t heap_find(FastPath *s, uint32_t order, uint32_t *found_order) {
    for (uint32_t k = order; k <= s->heap_max_order && k < 32; k++) {
        uint32_t block = *U32(s, free_head(k));
        if (block) {
            if (block < s->heap_off || (uint64_t)block + (1ull << k) > (uint64_t)s->heap_off + s->heap_size) {
                s->damaged = 1;
                return 0;
            }
            *found_order = k;
            return block;
        }
    }
    return 0;
}

void heap_take(FastPath *s, uint32_t block, uint32_t k, uint32_t order, Py_ssize_t nbytes) {
    heap_unlink(s, block, k);
    while (k > order) {
        k--;
        heap_push(s, block + (1u << k), k);
    }
    *U32(s, block + B_TAG) = (BLOCK_USED << 8) | order;
    *U32(s, block + B_REFS) = 0;
    *U32(s, block + B_LENGTH) = (uint32_t)nbytes;
    *U64(s, H_HEAP_USED) = *U64(s, H_HEAP_USED) + (1ull << order);
}

void heap_free(FastPath *s, uint32_t block) {
    uint32_t order = *U32(s, block + B_TAG) & 0xFFu;
    *U64(s, H_HEAP_USED) = *U64(s, H_HEAP_USED) - (1ull << order);
    if (order <= LAZY_MAX_ORDER) {
        /* Same policy as _heap.Heap.free: up to two small blocks per order stay unmerged. */
        uint32_t head = *U32(s, free_head(order));
        if (!head || !*U32(s, head + B_LENGTH)) {
            heap_push(s, block, order);
            return;
        }
    }
    while (order < s->heap_max_order) {
        uint64_t rel = ((uint64_t)block - s->heap_off) ^ (1ull << order);
        if (rel + (1ull << order) > s->heap_size)
            break;
        uint32_t buddy = (uint32_t)(s->heap_off + rel);
        if (*U32(s, buddy + B_TAG) != ((BLOCK_FREE << 8) | order))
            break;
        heap_unlink(s, buddy, order);
        if (buddy < block)
            block = buddy;
        order++;
    }
    heap_push(s, block, order);
}

void heap_decref(FastPath *s, uint32_t block) {
    volatile uint32_t *refs = U32(s, block + B_REFS);
    uint32_t r = *refs;
    if (r <= 1)
        heap_free(s, block);
    else
        *refs = r - 1;
}
