// Stands in for Prometheus in the metrics case: GETs every URL given on the command line
// once a second, from its own process (as a Prometheus server would), reusing its
// connections, and reads each body through. It first scrapes each URL WARMUP times in a
// row, as the warm-up jobs warm the job path: a process that has served its metrics for a
// while runs that code optimised, and a first scrape costs several times a later one.
// Prints `scraping` on stdout once warm.
const WARMUP = 50
const urls = process.argv.slice(2)

async function scrapeAll() {
  await Promise.all(
    urls.map((url) =>
      fetch(url)
        .then((response) => response.text())
        .catch(() => undefined),
    ),
  )
}

for (let i = 0; i < WARMUP; i++) await scrapeAll()
process.stdout.write('scraping\n')
setInterval(() => void scrapeAll(), 1_000)
