/** The links an item of a LinkedList carries itself. */
export interface Linked<T extends Linked<T>> {
  list: LinkedList<T> | undefined
  prev: T | undefined
  next: T | undefined
}

/**
 * A doubly linked list through its items' own fields, in the order they were added. Adding
 * and removing cost no hashing and no allocation: the lists here are on paths every job
 * takes (a node's held jobs at the distributor, a node's unacknowledged feedback). An item
 * is in at most one list; `list` says which.
 */
export class LinkedList<T extends Linked<T>> {
  private head: T | undefined
  private tail: T | undefined
  private count = 0

  get size(): number {
    return this.count
  }

  /** Appends `item`, taking it out of the list it was in. */
  add(item: T): void {
    item.list?.remove(item)
    item.list = this
    item.prev = this.tail
    item.next = undefined
    if (this.tail !== undefined) this.tail.next = item
    else this.head = item
    this.tail = item
    this.count++
  }

  /** Takes `item` out; nothing happens when it is not in this list. */
  remove(item: T): void {
    if (item.list !== this) return
    if (item.prev !== undefined) item.prev.next = item.next
    else this.head = item.next
    if (item.next !== undefined) item.next.prev = item.prev
    else this.tail = item.prev
    item.list = item.prev = item.next = undefined
    this.count--
  }

  values(): T[] {
    const out: T[] = []
    for (let item = this.head; item !== undefined; item = item.next) out.push(item)
    return out
  }

  /** Empties the list and returns what it held, in order. */
  drain(): T[] {
    const out: T[] = []
    for (let item = this.head; item !== undefined; ) {
      const next = item.next
      item.list = item.prev = item.next = undefined
      out.push(item)
      item = next
    }
    this.head = this.tail = undefined
    this.count = 0
    return out
  }
}
