//! How cost grows with the number of variables: `get`, one and three `set`s with a snapshot alive,
//! and the memory a copy costs once it diverges (by one write and by three), at 1, 10, 100, 1,000
//! and 10,000 bound variables — contextvars next to OpenTelemetry's `Context` and `imbl::HashMap`
//! used directly.
//!
//! `cargo bench --bench growth`, then `python3 scripts/plot_growth.py` for the table and the
//! plot in BENCHMARKS.md. OpenTelemetry keys are types, so it is measured up to 1,000 keys.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use contextvars::{Context, ContextVar, copy_context};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Counts the bytes allocated, to measure what a copy costs in memory.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated while `f` runs (what it keeps plus what it frees again).
fn bytes_allocated_by<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATED.load(Relaxed);
    let result = f();
    (ALLOCATED.load(Relaxed) - before, result)
}

const SIZES: [usize; 5] = [1, 10, 100, 1_000, 10_000];

#[derive(Debug, Clone, Copy)]
struct Key<const N: usize>(#[allow(dead_code)] u64);

macro_rules! otel_with_keys {
    ($cx:expr, $n:expr; $($k:literal)*) => {{
        let mut cx = $cx;
        $(if $k < $n { cx = cx.with_value(Key::<$k>($k)); })*
        cx
    }};
}

fn otel_context(n: usize) -> opentelemetry::Context {
    otel_with_keys!(opentelemetry::Context::new(), n; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127 128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144 145 146 147 148 149 150 151 152 153 154 155 156 157 158 159 160 161 162 163 164 165 166 167 168 169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191 192 193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216 217 218 219 220 221 222 223 224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255 256 257 258 259 260 261 262 263 264 265 266 267 268 269 270 271 272 273 274 275 276 277 278 279 280 281 282 283 284 285 286 287 288 289 290 291 292 293 294 295 296 297 298 299 300 301 302 303 304 305 306 307 308 309 310 311 312 313 314 315 316 317 318 319 320 321 322 323 324 325 326 327 328 329 330 331 332 333 334 335 336 337 338 339 340 341 342 343 344 345 346 347 348 349 350 351 352 353 354 355 356 357 358 359 360 361 362 363 364 365 366 367 368 369 370 371 372 373 374 375 376 377 378 379 380 381 382 383 384 385 386 387 388 389 390 391 392 393 394 395 396 397 398 399 400 401 402 403 404 405 406 407 408 409 410 411 412 413 414 415 416 417 418 419 420 421 422 423 424 425 426 427 428 429 430 431 432 433 434 435 436 437 438 439 440 441 442 443 444 445 446 447 448 449 450 451 452 453 454 455 456 457 458 459 460 461 462 463 464 465 466 467 468 469 470 471 472 473 474 475 476 477 478 479 480 481 482 483 484 485 486 487 488 489 490 491 492 493 494 495 496 497 498 499 500 501 502 503 504 505 506 507 508 509 510 511 512 513 514 515 516 517 518 519 520 521 522 523 524 525 526 527 528 529 530 531 532 533 534 535 536 537 538 539 540 541 542 543 544 545 546 547 548 549 550 551 552 553 554 555 556 557 558 559 560 561 562 563 564 565 566 567 568 569 570 571 572 573 574 575 576 577 578 579 580 581 582 583 584 585 586 587 588 589 590 591 592 593 594 595 596 597 598 599 600 601 602 603 604 605 606 607 608 609 610 611 612 613 614 615 616 617 618 619 620 621 622 623 624 625 626 627 628 629 630 631 632 633 634 635 636 637 638 639 640 641 642 643 644 645 646 647 648 649 650 651 652 653 654 655 656 657 658 659 660 661 662 663 664 665 666 667 668 669 670 671 672 673 674 675 676 677 678 679 680 681 682 683 684 685 686 687 688 689 690 691 692 693 694 695 696 697 698 699 700 701 702 703 704 705 706 707 708 709 710 711 712 713 714 715 716 717 718 719 720 721 722 723 724 725 726 727 728 729 730 731 732 733 734 735 736 737 738 739 740 741 742 743 744 745 746 747 748 749 750 751 752 753 754 755 756 757 758 759 760 761 762 763 764 765 766 767 768 769 770 771 772 773 774 775 776 777 778 779 780 781 782 783 784 785 786 787 788 789 790 791 792 793 794 795 796 797 798 799 800 801 802 803 804 805 806 807 808 809 810 811 812 813 814 815 816 817 818 819 820 821 822 823 824 825 826 827 828 829 830 831 832 833 834 835 836 837 838 839 840 841 842 843 844 845 846 847 848 849 850 851 852 853 854 855 856 857 858 859 860 861 862 863 864 865 866 867 868 869 870 871 872 873 874 875 876 877 878 879 880 881 882 883 884 885 886 887 888 889 890 891 892 893 894 895 896 897 898 899 900 901 902 903 904 905 906 907 908 909 910 911 912 913 914 915 916 917 918 919 920 921 922 923 924 925 926 927 928 929 930 931 932 933 934 935 936 937 938 939 940 941 942 943 944 945 946 947 948 949 950 951 952 953 954 955 956 957 958 959 960 961 962 963 964 965 966 967 968 969 970 971 972 973 974 975 976 977 978 979 980 981 982 983 984 985 986 987 988 989 990 991 992 993 994 995 996 997 998 999)
}

type Imbl = imbl::HashMap<u64, Arc<u64>>;

fn growth(c: &mut Criterion) {
    let mut memory = Vec::new();
    let mut memory_three = Vec::new();
    let mut get = c.benchmark_group("growth get");
    for n in SIZES {
        Context::new().run(|| {
            let vars: Vec<ContextVar<u64>> = (0..n).map(|_| ContextVar::new("g")).collect();
            for (i, var) in vars.iter().enumerate() {
                var.set(i as u64);
            }
            let var = &vars[n / 2];
            get.bench_with_input(BenchmarkId::new("contextvars", n), &n, |b, _| {
                b.iter(|| var.get())
            });
        });
        let map: Imbl = (0..n as u64).map(|i| (i, Arc::new(i))).collect();
        get.bench_with_input(BenchmarkId::new("imbl", n), &n, |b, _| {
            b.iter(|| map.get(&black_box(n as u64 / 2)).cloned())
        });
        if n <= 1_000 {
            let _guard = otel_context(n).attach();
            get.bench_with_input(BenchmarkId::new("opentelemetry", n), &n, |b, _| {
                b.iter(|| opentelemetry::Context::current().get::<Key<0>>().copied())
            });
        }
    }
    get.finish();

    let mut set = c.benchmark_group("growth set with a snapshot alive");
    for n in SIZES {
        Context::new().run(|| {
            let vars: Vec<ContextVar<u64>> = (0..n).map(|_| ContextVar::new("s")).collect();
            for (i, var) in vars.iter().enumerate() {
                var.set(i as u64);
            }
            let var = &vars[n / 2];
            set.bench_with_input(BenchmarkId::new("contextvars", n), &n, |b, _| {
                b.iter(|| {
                    let snapshot = copy_context();
                    var.set(black_box(7));
                    snapshot
                })
            });
            let (bytes, snapshot) = bytes_allocated_by(|| {
                let snapshot = copy_context();
                var.set(7);
                snapshot
            });
            drop(snapshot);
            memory.push(("contextvars", n, bytes));
        });
        let mut map: Imbl = (0..n as u64).map(|i| (i, Arc::new(i))).collect();
        set.bench_with_input(BenchmarkId::new("imbl", n), &n, |b, _| {
            b.iter(|| {
                let snapshot = map.clone();
                map.insert(black_box(n as u64 / 2), Arc::new(7));
                snapshot
            })
        });
        let (bytes, snapshot) = bytes_allocated_by(|| {
            let snapshot = map.clone();
            map.insert(n as u64 / 2, Arc::new(7));
            snapshot
        });
        drop(snapshot);
        memory.push(("imbl", n, bytes));
        if n <= 1_000 {
            let _guard = otel_context(n).attach();
            set.bench_with_input(BenchmarkId::new("opentelemetry", n), &n, |b, _| {
                b.iter(|| opentelemetry::Context::current_with_value(Key::<0>(7)))
            });
            let (bytes, cx) =
                bytes_allocated_by(|| opentelemetry::Context::current_with_value(Key::<0>(7)));
            drop(cx);
            memory.push(("opentelemetry", n, bytes));
        }
    }
    set.finish();

    // Three writes after a copy: a layer holds two changes over the shared map, and the third
    // turns it into a map of its own. The bindings written are distinct (the same one at 1).
    let mut three = c.benchmark_group("growth three sets with a snapshot alive");
    for n in SIZES {
        let written = [n / 2, n / 3, n / 4];
        Context::new().run(|| {
            let vars: Vec<ContextVar<u64>> = (0..n).map(|_| ContextVar::new("t")).collect();
            for (i, var) in vars.iter().enumerate() {
                var.set(i as u64);
            }
            let set_three = || {
                let snapshot = copy_context();
                for i in written {
                    vars[i].set(black_box(7));
                }
                snapshot
            };
            three.bench_with_input(BenchmarkId::new("contextvars", n), &n, |b, _| {
                b.iter(set_three)
            });
            let (bytes, snapshot) = bytes_allocated_by(set_three);
            drop(snapshot);
            memory_three.push(("contextvars", n, bytes));
        });
        let mut map: Imbl = (0..n as u64).map(|i| (i, Arc::new(i))).collect();
        let mut set_three = || {
            let snapshot = map.clone();
            for i in written {
                map.insert(black_box(i as u64), Arc::new(7));
            }
            snapshot
        };
        three.bench_with_input(BenchmarkId::new("imbl", n), &n, |b, _| {
            b.iter(&mut set_three)
        });
        let (bytes, snapshot) = bytes_allocated_by(set_three);
        drop(snapshot);
        memory_three.push(("imbl", n, bytes));
        if n <= 1_000 {
            let _guard = otel_context(n).attach();
            let set_three = || {
                opentelemetry::Context::current_with_value(Key::<0>(7))
                    .with_value(Key::<1>(7))
                    .with_value(Key::<2>(7))
            };
            three.bench_with_input(BenchmarkId::new("opentelemetry", n), &n, |b, _| {
                b.iter(set_three)
            });
            let (bytes, cx) = bytes_allocated_by(set_three);
            drop(cx);
            memory_three.push(("opentelemetry", n, bytes));
        }
    }
    three.finish();

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/growth-memory.csv");
    let mut out = std::fs::File::create(&path).expect("write the memory figures");
    writeln!(out, "implementation,vars,sets,bytes_per_copy").unwrap();
    for (sets, figures) in [(1, memory), (3, memory_three)] {
        for (name, n, bytes) in figures {
            writeln!(out, "{name},{n},{sets},{bytes}").unwrap();
        }
    }
}

criterion_group!(benches, growth);
criterion_main!(benches);
