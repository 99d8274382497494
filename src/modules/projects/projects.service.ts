import type { Database } from '../../db/database';
import { isUniqueViolation } from '../../db/errors';
import { ConflictError, ForbiddenError, NotFoundError } from '../../errors';
import { newId } from '../../ids';
import { Page, PageResult, toPageResult } from '../../pagination';
import { Actor, can } from '../auth/actor';
import type { AuditService } from '../audit/audit.service';
import { ProjectEntity } from './project.entity';
import { nameKey, type ProjectsRepository } from './projects.repository';

export interface Project {
  id: string;
  name: string;
  description: string | null;
  createdAt: string;
  updatedAt: string;
}

const toProject = (p: ProjectEntity): Project => ({
  id: p.id,
  name: p.name,
  description: p.description,
  createdAt: p.createdAt.toISOString(),
  updatedAt: p.updatedAt.toISOString(),
});

const taken = (name: string) => new ConflictError(`A project named "${name}" already exists`);

export class ProjectsService {
  constructor(
    private readonly db: Database,
    private readonly projects: ProjectsRepository,
    private readonly audit: AuditService,
  ) {}

  async create(actor: Actor, input: { name: string; description?: string }): Promise<Project> {
    if (!can(actor, 'projects:write')) throw new ForbiddenError('Creating projects needs the projects:write right');
    const now = new Date();
    const p = Object.assign(new ProjectEntity(), { id: newId(), name: input.name, nameKey: nameKey(input.name), description: input.description || null, createdAt: now, updatedAt: now });
    try {
      await this.db.transaction(async (tx) => {
        if (await this.projects.findByName(tx, p.name)) throw taken(p.name);
        await this.projects.insert(tx, p);
        await this.audit.record(tx, actor, 'project.create', 'success', { projectId: p.id }, { detail: { name: p.name } });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw taken(p.name);
      throw err;
    }
    return toProject(p);
  }

  async list(actor: Actor, page: Page): Promise<PageResult<Project>> {
    if (!can(actor, 'projects:read')) throw new ForbiddenError('Reading projects needs the projects:read right');
    const rows = await this.db.read((m) => this.projects.list(m, page, actor.role === 'member' ? actor.userId : undefined));
    return toPageResult(rows, page, toProject);
  }

  async get(actor: Actor, id: string): Promise<Project> {
    if (!can(actor, 'projects:read')) throw new ForbiddenError('Reading projects needs the projects:read right');
    return toProject(await this.db.read((m) => this.findVisibleTo(m, actor, id)));
  }

  async update(actor: Actor, id: string, input: { name?: string; description?: string | null }): Promise<Project> {
    try {
      return await this.db.transaction(async (tx) => {
        const p = await this.findVisibleTo(tx, actor, id);
        if (!can(actor, 'projects:write')) throw new ForbiddenError('Changing projects needs the projects:write right');
        const patch: Partial<ProjectEntity> = { updatedAt: new Date() };
        if (input.name !== undefined && input.name !== p.name) {
          const clash = await this.projects.findByName(tx, input.name);
          if (clash && clash.id !== id) throw taken(input.name);
          patch.name = input.name;
          patch.nameKey = nameKey(input.name);
        }
        if (input.description !== undefined) patch.description = input.description || null;
        await this.projects.update(tx, id, patch);
        await this.audit.record(tx, actor, 'project.update', 'success', { projectId: id }, { detail: { changed: Object.keys(patch).filter((k) => k !== 'updatedAt' && k !== 'nameKey') } });
        return toProject({ ...p, ...patch });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw taken(input.name ?? '');
      throw err;
    }
  }

  async delete(actor: Actor, id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const p = await this.findVisibleTo(tx, actor, id);
      if (!can(actor, 'projects:write')) throw new ForbiddenError('Deleting projects needs the projects:write right');
      const live = await this.projects.countLiveKeys(tx, id);
      if (live > 0) throw new ConflictError(`Project "${p.name}" still holds ${live} key(s); move or delete them first`);
      await this.projects.delete(tx, id);
      await this.audit.record(tx, actor, 'project.delete', 'success', { projectId: id }, { detail: { name: p.name } });
    });
  }

  /** 404 for projects the actor may not see (members: only projects holding their own keys). */
  private async findVisibleTo(m: Parameters<ProjectsRepository['findById']>[0], actor: Actor, id: string): Promise<ProjectEntity> {
    const p = await this.projects.findById(m, id);
    if (!p || (actor.role === 'member' && !(await this.projects.holdsKeyOf(m, id, actor.userId)))) throw new NotFoundError('No such project');
    return p;
  }
}
