/* The engine's one hash table: open addressing, instantiated per use.
 *
 * MT_HASHTAB(P, entry_t, key_t, FIRST_CAP, CALLOC, FREE) defines a table type
 * P_t of `entry_t` slots and the functions below.  It is a macro template, not
 * a table of void pointers, so that each table keeps its own entry layout
 * (the heap's big table counts its bytes, a node index stores 4-byte ids) and
 * its own hash, and the compiler inlines the hash and the key comparison into
 * each probe loop exactly as a hand-written table would have them.
 *
 * The scheme, the same for every instance:
 *  - capacity a power of two, starting at FIRST_CAP and doubling; at most
 *    half full (P_room grows before the insert that would pass half), so a
 *    probe chain always ends at an empty slot;
 *  - linear probing from hash & (cap - 1);
 *  - an all-zero entry is an empty slot: the table comes from CALLOC (a
 *    calloc-like allocator), and a removed entry is zeroed;
 *  - removal by backward shift: the entries after the hole that may move
 *    back into it do so, so chains stay intact with no tombstones and
 *    lookups never slow down on a table that churns (the heap's big blocks,
 *    sampled blocks).
 *
 * Before the macro, the user defines (macros or static inline functions):
 *    int    P_used(const entry_t *e)            nonzero if *e holds an entry
 *    size_t P_hash(key_t k)                     the hash of a key
 *    size_t P_home(const entry_t *e)            the hash of a held entry's key
 *    int    P_same(const entry_t *e, key_t k)   *e (held) has key k
 * P_home may read the key out of other data: a table of node ids hashes and
 * compares the node the id names (that array must not change under a probe).
 *
 * It defines:
 *    P_t { entry_t *tab; size_t cap, len; }  zero-initialised = empty, no memory
 *    int    P_room(P_t *t)      make room for one more entry; 0, or -1 (out of
 *                               memory: the table is unchanged, and still
 *                               usable if it had room)
 *    size_t P_find(const P_t *t, key_t k)   the slot holding k, or the empty
 *                               slot where k would go (needs t->cap > 0; a
 *                               P_room() before an insert)
 *    void   P_put_at(P_t *t, size_t i, entry_t e)  store at a P_find() slot
 *    void   P_remove_at(P_t *t, size_t i)   remove the entry in slot i
 *    void   P_clear(P_t *t)     free the table, back to empty
 *
 * No locking here: each user says who serialises its table (see above each
 * MT_HASHTAB).  Nothing here allocates except P_room, through CALLOC.
 *
 * Users: heap.c's big table; calltree.c's slot, node and line indexes and its
 * sampled blocks.  objects.c's ptrmap follows the same scheme but is not an
 * instance (parallel key and optional value arrays; see the comment there).
 */
#ifndef MT_HASHTAB_H
#define MT_HASHTAB_H

#include <stddef.h>
#include <string.h>

#define MT_HASHTAB(P, entry_t, key_t, FIRST_CAP, CALLOC, FREE)                                 \
    typedef struct {                                                                           \
        entry_t *tab;                                                                          \
        size_t cap, len;                                                                       \
    } P##_t;                                                                                   \
                                                                                               \
    /* Double the table (or make the first one) and rehash every entry. */                    \
    static int P##_grow(P##_t *t)                                                              \
    {                                                                                          \
        size_t cap = t->cap ? t->cap * 2 : (FIRST_CAP);                                        \
        entry_t *tab = CALLOC(cap, sizeof(entry_t));                                           \
        if (tab == NULL) {                                                                     \
            return -1;                                                                         \
        }                                                                                      \
        for (size_t i = 0; i < t->cap; i++) {                                                  \
            if (P##_used(&t->tab[i])) {                                                        \
                size_t j = P##_home(&t->tab[i]) & (cap - 1);                                   \
                while (P##_used(&tab[j])) {                                                    \
                    j = (j + 1) & (cap - 1);                                                   \
                }                                                                              \
                tab[j] = t->tab[i];                                                            \
            }                                                                                  \
        }                                                                                      \
        FREE(t->tab);                                                                          \
        t->tab = tab;                                                                          \
        t->cap = cap;                                                                          \
        return 0;                                                                              \
    }                                                                                          \
                                                                                               \
    static inline int P##_room(P##_t *t)                                                       \
    {                                                                                          \
        return ((t->len + 1) * 2 > t->cap && P##_grow(t) < 0) ? -1 : 0;                        \
    }                                                                                          \
                                                                                               \
    static inline size_t P##_find(const P##_t *t, key_t k)                                     \
    {                                                                                          \
        size_t mask = t->cap - 1, i = P##_hash(k) & mask;                                      \
        while (P##_used(&t->tab[i]) && !P##_same(&t->tab[i], k)) {                             \
            i = (i + 1) & mask;                                                                \
        }                                                                                      \
        return i;                                                                              \
    }                                                                                          \
                                                                                               \
    static inline void P##_put_at(P##_t *t, size_t i, entry_t e)                               \
    {                                                                                          \
        if (!P##_used(&t->tab[i])) {                                                           \
            t->len++;                                                                          \
        }                                                                                      \
        t->tab[i] = e;                                                                         \
    }                                                                                          \
                                                                                               \
    static inline void P##_remove_at(P##_t *t, size_t i)                                       \
    {                                                                                          \
        size_t mask = t->cap - 1, hole = i, j = i;                                             \
        for (;;) {                                                                             \
            j = (j + 1) & mask;                                                                \
            if (!P##_used(&t->tab[j])) {                                                       \
                break;                                                                         \
            }                                                                                  \
            /* an entry may fill the hole if the hole is not before its home */               \
            size_t home = P##_home(&t->tab[j]) & mask;                                         \
            if (((j - home) & mask) >= ((j - hole) & mask)) {                                  \
                t->tab[hole] = t->tab[j];                                                      \
                hole = j;                                                                      \
            }                                                                                  \
        }                                                                                      \
        memset(&t->tab[hole], 0, sizeof(entry_t));                                             \
        t->len--;                                                                              \
    }                                                                                          \
                                                                                               \
    static inline void P##_clear(P##_t *t)                                                     \
    {                                                                                          \
        FREE(t->tab);                                                                          \
        t->tab = NULL;                                                                         \
        t->cap = t->len = 0;                                                                   \
    }

#endif
