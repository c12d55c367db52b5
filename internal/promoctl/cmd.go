// Package promoctl is the kubectl promo plugin (SPEC §6): import, export and
// generate promo codes in bulk, as PromoCodeSets applied server-side.
// cmd/kubectl-promo only calls NewCommand.
package promoctl

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// NewCommand returns the kubectl-promo root command writing to streams.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:           "kubectl-promo",
		Short:         "Manage promo codes in bulk: import, export and generate PromoCodeSets",
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl promo"},
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	flags.AddFlags(root.PersistentFlags())
	e := &env{flags: flags, streams: streams}
	root.AddCommand(newImportCommand(e), newExportCommand(e), newGenerateCommand(e))
	return root
}

// Main runs the plugin with os.Args and the process's streams; it returns the exit code.
func Main() int {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	cmd := NewCommand(streams)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(streams.ErrOut, "error:", err)
		return 1
	}
	return 0
}

type env struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
}

func (e *env) namespace() (string, error) {
	ns, _, err := e.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	return ns, nil
}

func (e *env) client() (client.Client, error) {
	cfg, err := e.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	scheme := runtime.NewScheme()
	utilruntime.Must(trackingv1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	return c, nil
}

// claimCacheFile is where preflights keep the cluster's set entries: under
// --cache-dir (kubectl's, default ~/.kube/cache), per API server; "" when
// --cache-dir is empty.
func (e *env) claimCacheFile() string {
	cfg, err := e.flags.ToRESTConfig()
	if err != nil || e.flags.CacheDir == nil {
		return ""
	}
	return ClaimCacheFile(*e.flags.CacheDir, cfg.Host)
}

// progressWriter is stderr when stderr is a terminal, else nil.
func (e *env) progressWriter() io.Writer {
	if f, ok := e.streams.ErrOut.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return f
	}
	return nil
}

// applyFlags are the write options import and generate --apply share.
type applyFlags struct {
	offer   string
	prefix  string
	dryRun  string
	output  string
	workers int
}

func (a *applyFlags) add(cmd *cobra.Command, prefixHelp string) {
	f := cmd.Flags()
	f.StringVar(&a.offer, "offer", "", "the Offer (in the namespace) every code attributes to (required)")
	f.StringVar(&a.prefix, "set-prefix", "", prefixHelp)
	f.StringVar(&a.dryRun, "dry-run", "none", `"none", "client" (print the sets, contact no server) or "server" (send every write with dryRun)`)
	f.StringVarP(&a.output, "output", "o", "", `with --dry-run=client: "yaml", "json" or "name"`)
	f.IntVar(&a.workers, "workers", 4, "sets applied at once")
	_ = cmd.MarkFlagRequired("offer")
}

func (a *applyFlags) check() error {
	switch a.dryRun {
	case "none", "client", "server":
	default:
		return fmt.Errorf(`--dry-run must be "none", "client" or "server", not %q`, a.dryRun)
	}
	switch a.output {
	case "", "yaml", "json", "name":
	default:
		return fmt.Errorf(`--output must be "yaml", "json" or "name", not %q`, a.output)
	}
	if a.output != "" && a.dryRun != "client" {
		return fmt.Errorf("--output prints the planned sets and needs --dry-run=client")
	}
	return nil
}

// run prints (client dry run) or applies a plan.
func (e *env) run(ctx context.Context, a *applyFlags, plan *Plan) error {
	if a.dryRun == "client" {
		return PrintPlan(e.streams.Out, plan, a.output)
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	im := &Importer{Client: c, Out: e.streams.Out, Progress: e.progressWriter(), Workers: a.workers, DryRunServer: a.dryRun == "server"}
	res, err := im.Apply(ctx, plan)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.streams.ErrOut, "import %s of offer %s/%s: %s%s\n", plan.Prefix, plan.Namespace, plan.Offer, res, im.suffix())
	return nil
}

// PrintPlan writes the planned sets as YAML documents, a JSON List, or names.
func PrintPlan(w io.Writer, plan *Plan, output string) error {
	switch output {
	case "json":
		items := make([]*setApply, len(plan.Sets))
		for i, s := range plan.Sets {
			items[i] = ApplyBody(s)
		}
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		var buf bytes.Buffer
		for i, s := range plan.Sets {
			b, err := yaml.Marshal(ApplyBody(s))
			if err != nil {
				return err
			}
			if i > 0 {
				buf.WriteString("---\n")
			}
			buf.Write(b)
			if buf.Len() > 1<<20 {
				if _, err := w.Write(buf.Bytes()); err != nil {
					return err
				}
				buf.Reset()
			}
		}
		_, err := w.Write(buf.Bytes())
		return err
	default:
		for _, s := range plan.Sets {
			suffix := " (dry run)"
			if output == "name" {
				suffix = ""
			}
			if _, err := fmt.Fprintf(w, "promocodeset.tracking.promocodes.dev/%s%s\n", s.Name, suffix); err != nil {
				return err
			}
		}
		return nil
	}
}

func newImportCommand(e *env) *cobra.Command {
	a := &applyFlags{}
	var noPreflight bool
	cmd := &cobra.Command{
		Use:   "import FILE.csv --offer NAME [-n NS] [--set-prefix P] [--dry-run=client -o yaml]",
		Short: "Import a CSV of codes as PromoCodeSets of one Offer (server-side apply, idempotent)",
		Long: `Import a CSV file with the header code,affiliate_id[,start_date,end_date,description]
(dates RFC 3339) as PromoCodeSets of at most 5,000 codes, named <set-prefix>-NNNN and
labelled ` + ImportLabel + `=<set-prefix>. The whole file is validated first: on any
error every bad line and column is listed and nothing is applied. The file is the
import's whole content: importing it again changes nothing, a removed line is removed
from its set, sets no longer needed are deleted. "-" reads standard input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.check(); err != nil {
				return err
			}
			ns, err := e.namespace()
			if err != nil {
				return err
			}
			prefix := a.prefix
			if prefix == "" {
				prefix = a.offer
			}
			if err := ValidatePrefix(prefix); err != nil {
				return err
			}
			r := e.streams.In
			name := args[0]
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer func() { _ = f.Close() }() // read only
				r = f
			}
			start := time.Now()
			parsed, err := ParseCSV(name, r, ParseOptions{Offer: a.offer})
			if err != nil {
				return err
			}
			if parsed.SkippedPromoCodes > 0 {
				fmt.Fprintf(e.streams.ErrOut, "skipped %d line(s) of kind PromoCode: they are objects of their own, not set entries\n", parsed.SkippedPromoCodes)
			}
			plan := BuildPlan(parsed.Rows, ns, a.offer, prefix)
			if a.dryRun != "client" {
				fmt.Fprintf(e.streams.ErrOut, "validated %d codes in %s: %s\n", len(parsed.Rows), time.Since(start).Round(time.Microsecond), plural(len(plan.Sets), "set"))
			}
			if a.dryRun != "client" && !noPreflight {
				c, err := e.client()
				if err != nil {
					return err
				}
				start := time.Now()
				k := &Checker{Client: c, CacheFile: e.claimCacheFile(),
					Warn: func(err error) { fmt.Fprintf(e.streams.ErrOut, "warning: %v\n", err) }}
				switch err := k.Preflight(cmd.Context(), name, parsed, plan); {
				case errors.Is(err, ErrPreflightForbidden):
					fmt.Fprintf(e.streams.ErrOut, "warning: no preflight check against the cluster's codes (%v); the webhook still judges every set\n", err)
				case err != nil:
					return err
				default:
					fmt.Fprintf(e.streams.ErrOut, "checked against every code in the cluster in %s\n", time.Since(start).Round(time.Millisecond))
				}
			}
			return e.run(cmd.Context(), a, plan)
		},
	}
	a.add(cmd, "set names start with this prefix, and the import label carries it (default: the offer's name)")
	cmd.Flags().BoolVar(&noPreflight, "no-preflight", false, "skip checking the file's codes against every code in the cluster before writing")
	return cmd
}

func newExportCommand(e *env) *cobra.Command {
	var offer, file string
	var all bool
	cmd := &cobra.Command{
		Use:   "export [-n NS] [--offer NAME] [-A]",
		Short: "Write every code (PromoCodes and PromoCodeSet entries) with its state as CSV",
		Long: `Write every code of the namespace as CSV: the import columns
(code,affiliate_id,start_date,end_date,description), then offer, state
(Active, Scheduled, Expired, Rejected, Inactive), kind and object (namespace/name).
A file exported for one offer imports back unchanged (lines of kind PromoCode are skipped).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns := ""
			if !all {
				var err error
				if ns, err = e.namespace(); err != nil {
					return err
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ex := &Exporter{Client: c, Namespace: ns, Offer: offer}
			if file == "" || file == "-" {
				_, err := ex.Export(cmd.Context(), e.streams.Out)
				return err
			}
			f, err := os.Create(file)
			if err != nil {
				return err
			}
			n, err := ex.Export(cmd.Context(), f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("writing %s: %w", file, err)
			}
			fmt.Fprintf(e.streams.ErrOut, "exported %d codes to %s\n", n, file)
			return nil
		},
	}
	cmd.Flags().StringVar(&offer, "offer", "", "only codes of this Offer")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "codes of every namespace")
	cmd.Flags().StringVarP(&file, "file", "f", "", "write to this file instead of standard output")
	return cmd
}

func newGenerateCommand(e *env) *cobra.Command {
	a := &applyFlags{}
	g := &Generator{}
	var affiliate int64
	var apply bool
	var startDate, endDate, description string
	cmd := &cobra.Command{
		Use:   "generate --count N --length L [--prefix P] --affiliate ID --offer NAME [--apply]",
		Short: "Generate random codes that collide with no code in the cluster; CSV out, or applied",
		Long: `Generate --count codes of --prefix followed by --length symbols drawn with
crypto/rand from the alphabet ` + Alphabet + ` (no 0, O, 1, I). No code equals,
case-insensitively, any PromoCode or PromoCodeSet entry in the cluster (every
namespace) or another code of the batch. Without --apply the CSV goes to standard
output (an import file); with --apply the codes are imported as a new import
(--set-prefix, default <offer>-gen-<random>), which must not exist yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.Check(); err != nil {
				return err
			}
			if affiliate < 1 {
				return fmt.Errorf("--affiliate must be an affiliate id >= 1")
			}
			if err := checkGenerateFlags(startDate, endDate, description); err != nil {
				return err
			}
			if err := a.check(); err != nil {
				return err
			}
			if !apply && (a.dryRun != "none" || a.output != "") {
				return fmt.Errorf("--dry-run and --output go with --apply")
			}
			// The CSV the codes become; --apply reads it back with the import's own rules.
			var csvBuf bytes.Buffer
			c, err := e.client()
			if err != nil {
				return err
			}
			taken, err := ExistingCodes(cmd.Context(), c)
			if err != nil {
				return err
			}
			codes, err := g.Generate(taken)
			if err != nil {
				return err
			}
			if err := writeGenerated(&csvBuf, codes, affiliate, startDate, endDate, description); err != nil {
				return err
			}
			if !apply {
				_, err := e.streams.Out.Write(csvBuf.Bytes())
				return err
			}
			ns, err := e.namespace()
			if err != nil {
				return err
			}
			parsed, err := ParseCSV("generated codes", &csvBuf, ParseOptions{Offer: a.offer})
			if err != nil {
				return err
			}
			prefix := a.prefix
			if prefix == "" {
				s, err := RandomSuffix(5)
				if err != nil {
					return err
				}
				prefix = a.offer + "-gen-" + s
			}
			if err := ValidatePrefix(prefix); err != nil {
				return err
			}
			if a.dryRun != "client" {
				existing, err := ListImport(cmd.Context(), c, ns, prefix)
				if err != nil {
					return err
				}
				if len(existing) > 0 {
					return fmt.Errorf("import %q already has %d set(s) in %s: generate --apply never replaces an import; choose another --set-prefix", prefix, len(existing), ns)
				}
			}
			return e.run(cmd.Context(), a, BuildPlan(parsed.Rows, ns, a.offer, prefix))
		},
	}
	f := cmd.Flags()
	f.IntVar(&g.Count, "count", 0, "how many codes (required)")
	f.IntVar(&g.Length, "length", 0, "random symbols per code, after the prefix (required)")
	f.StringVar(&g.Prefix, "prefix", "", "letters and digits every code starts with")
	f.Int64Var(&affiliate, "affiliate", 0, "the affiliate id every code belongs to (required)")
	f.BoolVar(&apply, "apply", false, "import the codes instead of printing them")
	f.StringVar(&startDate, "start-date", "", "RFC 3339 start date of every code")
	f.StringVar(&endDate, "end-date", "", "RFC 3339 end date of every code")
	f.StringVar(&description, "description", "", "description of every code")
	a.add(cmd, "with --apply: the import's set prefix (default <offer>-gen-<random>)")
	for _, n := range []string{"count", "length", "affiliate"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func writeGenerated(w io.Writer, codes []string, affiliate int64, start, end, desc string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{colCode, colAffiliateID, colStartDate, colEndDate, colDescription}); err != nil {
		return err
	}
	aff := strconv.FormatInt(affiliate, 10)
	for _, c := range codes {
		if err := cw.Write([]string{c, aff, start, end, desc}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// checkFlagsDates validates generate's --start-date, --end-date and --description.
func checkGenerateFlags(start, end, desc string) error {
	var s, e int64
	var msg string
	if start != "" {
		if s, msg = parseDate(start); msg != "" {
			return fmt.Errorf("--start-date: %s", msg)
		}
	}
	if end != "" {
		if e, msg = parseDate(end); msg != "" {
			return fmt.Errorf("--end-date: %s", msg)
		}
		if start != "" && e <= s {
			return fmt.Errorf("--end-date must be after --start-date")
		}
	}
	if utf8.RuneCountInString(desc) > MaxDescriptionLen || !utf8.ValidString(desc) {
		return fmt.Errorf("--description: valid UTF-8, at most %d characters", MaxDescriptionLen)
	}
	return nil
}
