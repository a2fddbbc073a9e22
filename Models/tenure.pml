/*
 * Tenure's resource lease protocol, one resource, for the spin model checker.
 * What each action stands for in the engine, and what is abstracted, is in
 * docs/safety.md ("The model"). Run: Tools/model-check.sh
 *
 * Properties (assertions, checked in every reachable state):
 *   - never two processes hold the resource at once;
 *   - an lver is handed to one acquisition only, and every lver handed out
 *     is above every one handed out before.
 *
 * Faults: any write may time out at its issuer and land later (or never),
 * at any point of the run, except that a host's later write to the same
 * sector waits behind it (the device's write ordering); a host may crash:
 * its process dies, its late write lands or is lost, and it comes back
 * with a new generation (the delta-lease join).
 *
 * Known-bug variants that must fail: -DBUG_NO_PHASE2_READ, -DBUG_WIN_BY_HOST
 * (a win is any value naming our host and generation, whichever acquisition
 * proposed it). -DBUG_NO_REPAIR removes the repair of a leader gone back;
 * in the scopes checked the phase-1 adoption of the old vote and the
 * proposal stamps still keep it safe (docs/safety.md).
 */

#ifndef NH
#define NH 2            /* hosts */
#endif
#ifndef ND
#define ND 1            /* disks: 1, or 3 with a majority per phase */
#endif
#ifndef MAXL
#define MAXL 3          /* versions explored */
#endif
#ifndef LATE
#define LATE 2          /* writes that land late, over the whole run */
#endif
#ifndef CRASHES
#define CRASHES 1
#endif
#ifndef ROUNDS
#define ROUNDS 2        /* ballots per acquire before it gives up */
#endif
#ifndef OPS
#define OPS 3           /* acquires per host */
#endif
#define MAJ (ND/2+1)
#define STRIDE NH

typedef Value {         /* inp, inp2, inp3: host id (0 none), generation, proposal stamp */
  byte host; byte gen; byte stamp
}
typedef Leader {
  byte lver; Value v; bool held;   /* held: timestamp != 0 */
  byte writer                      /* write_id */
}
typedef Dblock {
  byte mbal; byte bal; Value v; byte lver; bool released
}
typedef Pending {       /* a host's write that timed out and may still land */
  byte kind;            /* 0 none, 1 leader, 2 dblock */
  byte disk; Leader pl; Dblock pb
}

Leader leader[ND];
Dblock dblock[ND * NH];          /* disk d, host h (1..NH): d*NH + h-1 */
Pending pending[NH];

byte lateLeft = LATE;
byte crashesLeft = CRASHES;
byte gen[NH];                    /* the host's current generation */
byte holding[NH];                /* the lver its process holds, 0 none */
byte stampOf[NH];                /* proposal stamps drawn */
byte handed[MAXL + 2];
byte maxHanded;

#define DB(d, h) dblock[(d) * NH + (h) - 1]

inline copyValue(dst, src) { dst.host = src.host; dst.gen = src.gen; dst.stamp = src.stamp }
inline copyDblock(dst, src) {
  dst.mbal = src.mbal; dst.bal = src.bal; copyValue(dst.v, src.v); dst.lver = src.lver; dst.released = src.released
}
inline copyLeader(dst, src) { dst.lver = src.lver; copyValue(dst.v, src.v); dst.held = src.held; dst.writer = src.writer }

/* A pending write lands (or is lost) now. */
inline settle(h) {
  if
  :: pending[h-1].kind == 1 -> copyLeader(leader[pending[h-1].disk], pending[h-1].pl);
     printf("MSG late leader of h%d lands on d%d: lver %d owner %d/%d/%d held %d\n", h, pending[h-1].disk, pending[h-1].pl.lver, pending[h-1].pl.v.host, pending[h-1].pl.v.gen, pending[h-1].pl.v.stamp, pending[h-1].pl.held)
  :: pending[h-1].kind == 2 -> copyDblock(DB(pending[h-1].disk, h), pending[h-1].pb);
     printf("MSG late dblock of h%d lands on d%d: lver %d mbal %d bal %d\n", h, pending[h-1].disk, pending[h-1].pb.lver, pending[h-1].pb.mbal, pending[h-1].pb.bal)
  :: true                   /* lost */
  fi;
  pending[h-1].kind = 0
}

/* Host h writes its dblock `b` to disk d: it lands, or times out (ok = 0) and may land later. */
inline writeDblock(h, d, blk, ok) {
  atomic {
    assert(blk.bal == 0 || blk.v.host != 0);
    if :: pending[h-1].kind == 2 && pending[h-1].disk == d -> settle(h) :: else -> skip fi;
    if
    :: copyDblock(DB(d, h), blk); ok = 1;
       printf("MSG h%d dblock d%d: lver %d mbal %d bal %d v %d/%d/%d rel %d\n", h, d, blk.lver, blk.mbal, blk.bal, blk.v.host, blk.v.gen, blk.v.stamp, blk.released)
    :: lateLeft > 0 && pending[h-1].kind == 0 ->
         printf("MSG h%d dblock d%d times out (lver %d bal %d)\n", h, d, blk.lver, blk.bal);
         lateLeft--; pending[h-1].kind = 2; pending[h-1].disk = d; copyDblock(pending[h-1].pb, blk); ok = 0
    fi
  }
}

inline writeLeader(h, d, ldr, ok) {
  atomic {
    assert(!ldr.held || ldr.v.host != 0);
    if :: pending[h-1].kind == 1 && pending[h-1].disk == d -> settle(h) :: else -> skip fi;
    if
    :: copyLeader(leader[d], ldr); ok = 1;
       printf("MSG h%d leader d%d: lver %d owner %d/%d/%d held %d\n", h, d, ldr.lver, ldr.v.host, ldr.v.gen, ldr.v.stamp, ldr.held)
    :: lateLeft > 0 && pending[h-1].kind == 0 ->
         printf("MSG h%d leader d%d times out (lver %d)\n", h, d, ldr.lver);
         lateLeft--; pending[h-1].kind = 1; pending[h-1].disk = d; copyLeader(pending[h-1].pl, ldr); ok = 0
    fi
  }
}

/* The disks a read reaches: all, or (3 disks) a majority chosen by the adversary. */
inline pickReadSet(miss) {
  if
  :: ND == 1 -> miss = 255
  :: ND > 1 -> if :: miss = 255 :: miss = 0 :: miss = 1 :: miss = 2 fi
  fi
}

inline clearDblock(x) { x.mbal = 0; x.bal = 0; x.v.host = 0; x.v.gen = 0; x.v.stamp = 0; x.lver = 0; x.released = 0 }
inline clearLeader(x) { x.lver = 0; x.v.host = 0; x.v.gen = 0; x.v.stamp = 0; x.held = 0; x.writer = 0 }

/* The newest copy of host h's dblock over the disks (the one a rewrite must
 * start from: rewriting phase 1's copy, without the vote phase 2 added,
 * would erase a vote that may have decided the version). */
inline ownNewest(h, out) {
  clearDblock(out);
  d = 0;
  do
  :: d < ND ->
     /* highest (lver, mbal, bal): PaxosLease.newestOwn */
     if
     :: DB(d, h).lver > out.lver || (DB(d, h).lver == out.lver && (DB(d, h).mbal > out.mbal || (DB(d, h).mbal == out.mbal && DB(d, h).bal >= out.bal))) ->
        copyDblock(out, DB(d, h))
     :: else -> skip
     fi;
     d++
  :: else -> break
  od
}

/* Forget every temporary of an operation: dead values would only split states. */
inline forget() {
  d = 0; q = 0; miss = 0; nok = 0; ok = 0; L = 0; mbal = 0; target = 0; started = 0; relmax = 0; maxSeen = 0;
  aborted = 0; repair = 0; won = 0; clearLeader(cur); clearLeader(tmp); clearDblock(mine); clearDblock(best);
  prop.host = 0; prop.gen = 0; prop.stamp = 0
}

proctype Host(byte h) {
  byte ops = 0;
  byte d, q, miss, nok, ok;
  byte L, mbal, round, target, started, relmax, maxSeen;
  bool aborted, repair, won;
  Leader cur; Leader tmp; Dblock mine; Dblock best; Value prop;
  byte myGen;

  /* Each atomic block below is one I/O (a sector or an area read, a
   * sector written) with the local work around it: other hosts and late
   * writes interleave between I/Os, never inside one. */
end_idle:
  do
  /* ---- crash: the process dies, a late write lands or is lost, the host rejoins with a new generation */
  :: atomic { crashesLeft > 0 -> crashesLeft--; holding[h-1] = 0; printf("MSG h%d crashes\n", h); settle(h); gen[h-1]++ }

  /* ---- release: the process stops, our dblock is marked released, the leader freed if we wrote it */
  :: atomic {
       holding[h-1] != 0 ->
       L = holding[h-1]; holding[h-1] = 0; printf("MSG h%d releases lver %d\n", h, L);
       ownNewest(h, best);
       best.released = 1
     };
     d = 0;
     do :: d < ND -> writeDblock(h, d, best, ok); d++ :: else -> break od;
     d = 0;
     do
     :: d < ND ->
        atomic {
          copyLeader(tmp, leader[d]);
          if
          :: tmp.lver == L && tmp.v.host == h && tmp.v.gen == gen[h-1] && tmp.held && tmp.writer == h ->
             tmp.held = 0; writeLeader(h, d, tmp, ok)
          :: else -> skip
          fi;
          d++
        }
     :: else -> break
     od;
     atomic { forget() }

  /* ---- acquire */
  :: atomic {
       holding[h-1] == 0 && ops < OPS ->
       ops++;
       myGen = gen[h-1];
       stampOf[h-1]++;
       prop.host = h; prop.gen = myGen;
#ifdef BUG_WIN_BY_HOST
       prop.stamp = 1;
#else
       prop.stamp = stampOf[h-1];
#endif
       round = 0
     };
restart:
     atomic {
       if :: round >= ROUNDS || myGen != gen[h-1] -> goto done :: else -> skip fi;
       round++;
       /* read the leaders (the newest) and every dblock, from the disks reached */
       pickReadSet(miss);
       clearLeader(cur); started = 0; relmax = 0; maxSeen = 0;
       d = 0;
       do
       :: d < ND ->
          if
          :: d != miss ->
             if :: leader[d].lver >= cur.lver -> copyLeader(cur, leader[d]) :: else -> skip fi;
             q = 1;
             do
             :: q <= NH ->
                if :: DB(d, q).lver > started -> started = DB(d, q).lver :: else -> skip fi;
                if :: DB(d, q).released && DB(d, q).bal > 0 && DB(d, q).lver > relmax -> relmax = DB(d, q).lver :: else -> skip fi;
                if :: DB(d, q).mbal > maxSeen -> maxSeen = DB(d, q).mbal :: else -> skip fi;
                q++
             :: else -> break
             od
          :: else -> skip
          fi;
          d++
       :: else -> break
       od;
       /* the leader went back: re-decide the newest version any dblock names */
       repair = 0;
#ifndef BUG_NO_REPAIR
       if
       :: started >= cur.lver + 2 || relmax > cur.lver -> repair = 1; L = started
       :: else -> skip
       fi;
#endif
       if
       :: !repair ->
          /* owner judgement: a live owner keeps it; one that crashed since is fenced (dead) */
          if
          :: cur.held && !(cur.v.host == h && cur.v.gen <= myGen) ->
             if
             :: gen[cur.v.host - 1] != cur.v.gen -> skip
             :: else ->
                if
                :: cur.writer != cur.v.host && DB(0, cur.v.host).released && DB(0, cur.v.host).lver == cur.lver -> skip
                :: else -> goto done
                fi
             fi
          :: else -> skip
          fi;
          L = cur.lver + 1;
          /* never ballot below our own dblock */
          d = 0; do :: d < ND -> if :: DB(d, h).lver > L -> goto restart :: else -> skip fi; d++ :: else -> break od
       :: else -> skip
       fi;
       printf("MSG h%d read (missing d%d): leader %d owner %d held %d, started %d, released %d -> ballot for %d (repair %d)\n", h, miss, cur.lver, cur.v.host, cur.held, started, relmax, L, repair);
       if :: L > MAXL -> goto done :: else -> skip fi;
       /* one Disk Paxos ballot for version L; phase 1 keeps our vote (and its
        * released mark) at this version */
       mbal = (maxSeen / STRIDE + 1) * STRIDE + h;
       ownNewest(h, best);
       mine.mbal = mbal; mine.lver = L;
       if
       :: best.lver == L && best.bal > 0 -> mine.bal = best.bal; copyValue(mine.v, best.v); mine.released = best.released
       :: else -> mine.bal = 0; mine.v.host = 0; mine.v.gen = 0; mine.v.stamp = 0; mine.released = 0
       fi;
       nok = 0; d = 0
     };
     /* phase 1: write */
     do :: d < ND -> writeDblock(h, d, mine, ok); nok = nok + ok; d++ :: else -> break od;
     /* phase 1: read every dblock; abort on a higher ballot or a later version; choose */
     atomic {
       if :: nok < MAJ -> goto restart :: else -> skip fi;
       pickReadSet(miss);
       aborted = 0; clearDblock(best);
       d = 0;
       do
       :: d < ND ->
          if
          :: d != miss ->
             q = 1;
             do
             :: q <= NH ->
                if
                :: DB(d, q).lver > L && !repair -> aborted = 1
                :: DB(d, q).lver == L && DB(d, q).mbal > mbal -> aborted = 1
                :: DB(d, q).lver == L && DB(d, q).bal > best.bal -> best.bal = DB(d, q).bal; copyValue(best.v, DB(d, q).v)
                :: else -> skip
                fi;
                q++
             :: else -> break
             od
          :: else -> skip
          fi;
          d++
       :: else -> break
       od;
       if :: aborted -> goto restart :: else -> skip fi;
       if
       :: best.bal > 0 -> copyValue(mine.v, best.v)
       :: else -> copyValue(mine.v, prop)
       fi;
       mine.bal = mbal;
       nok = 0; d = 0
     };
     /* phase 2: write */
     do :: d < ND -> writeDblock(h, d, mine, ok); nok = nok + ok; d++ :: else -> break od;
     /* phase 2: read */
     atomic {
       if :: nok < MAJ -> goto restart :: else -> skip fi;
#ifndef BUG_NO_PHASE2_READ
       pickReadSet(miss);
       d = 0;
       do
       :: d < ND ->
          if
          :: d != miss ->
             q = 1;
             do
             :: q <= NH ->
                if
                :: DB(d, q).lver > L && !repair -> aborted = 1
                :: DB(d, q).lver == L && DB(d, q).mbal > mbal -> aborted = 1
                :: else -> skip
                fi;
                q++
             :: else -> break
             od
          :: else -> skip
          fi;
          d++
       :: else -> break
       od;
       if :: aborted -> goto restart :: else -> skip fi;
#endif
       /* commit: the leader at L names the decided value */
       tmp.lver = L; copyValue(tmp.v, mine.v); tmp.held = 1; tmp.writer = h;
       nok = 0; d = 0
     };
     do :: d < ND -> writeLeader(h, d, tmp, ok); nok = nok + ok; d++ :: else -> break od;
     atomic {
       if :: nok < MAJ -> goto done :: else -> skip fi;
       if :: repair -> goto restart :: else -> skip fi;
       /* a win is this acquisition's own value */
       won = (mine.v.host == h && mine.v.gen == myGen && mine.v.stamp == prop.stamp);
       if
       :: won && myGen == gen[h-1] ->
          assert(handed[L] == 0);
          assert(L > maxHanded);
          q = 1;
          do :: q <= NH -> assert(q == h || holding[q-1] == 0); q++ :: else -> break od;
          printf("MSG h%d WINS lver %d\n", h, L);
          handed[L]++; maxHanded = L; holding[h-1] = L
       :: else -> skip
       fi;
       /* an earlier acquisition of ours won this version: start over above it */
       if :: !won && mine.v.host == h && mine.v.gen == myGen -> goto restart :: else -> skip fi
     };
done:
     atomic { forget(); round = 0; myGen = 0 }
  od
}

/* Late writes land (or are lost) at any moment. */
active proctype Disks() {
end_disks:
  do
  :: atomic { pending[0].kind != 0 -> settle(1) }
#if NH > 1
  :: atomic { pending[1].kind != 0 -> settle(2) }
#endif
#if NH > 2
  :: atomic { pending[2].kind != 0 -> settle(3) }
#endif
  od
}

init {
  byte i = 0;
  atomic {
    do :: i < NH -> gen[i] = 1; i++ :: else -> break od;
    i = 1;
    do :: i <= NH -> run Host(i); i++ :: else -> break od
  }
}
